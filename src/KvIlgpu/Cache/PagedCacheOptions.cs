namespace KvIlgpu.Cache;

/// <summary>How big the paged cache is.</summary>
/// <param name="MemoryBytes">Budget for blocks plus metadata; null: MemoryFraction of the device's memory.</param>
/// <param name="MemoryFraction">Share of the device's memory when MemoryBytes is null.</param>
/// <param name="BlockSize">Tokens per block.</param>
/// <param name="MaxSequences">Sequences that can hold cache at once (rows of the block-table array).</param>
internal sealed record PagedCacheOptions(long? MemoryBytes = null, double MemoryFraction = 0.25, int BlockSize = 16, int MaxSequences = 64);
