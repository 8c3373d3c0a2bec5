namespace KvIlgpu.Cache;

/// <summary>How big the paged cache is and how it stores each head.</summary>
/// <param name="MemoryBytes">Budget for blocks plus metadata; null: MemoryFraction of the device's memory.</param>
/// <param name="MemoryFraction">Share of the device's memory when MemoryBytes is null.</param>
/// <param name="BlockSize">Tokens per block.</param>
/// <param name="MaxSequences">Sequences that can hold cache at once (rows of the block-table array).</param>
/// <param name="Storage">How features are stored (resolved: not Auto).</param>
/// <param name="KeyWidth">Features of K each slot stores (0: the model's head_dim).</param>
/// <param name="ValueWidth">Features of V each slot stores (0: the model's head_dim).</param>
internal sealed record PagedCacheOptions(long? MemoryBytes = null, double MemoryFraction = 0.25, int BlockSize = 16, int MaxSequences = 64,
    KvStorageType Storage = KvStorageType.F32, int KeyWidth = 0, int ValueWidth = 0);
