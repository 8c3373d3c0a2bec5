namespace KvIlgpu.Cache;

/// <summary>How big the paged cache is and how it stores each head.</summary>
/// <param name="MemoryBytes">Budget for blocks plus metadata; null: MemoryFraction of the device's memory.</param>
/// <param name="MemoryFraction">Share of the device's memory when MemoryBytes is null.</param>
/// <param name="BlockSize">Tokens per block.</param>
/// <param name="MaxSequences">Sequences that can hold cache at once (rows of the block-table array).</param>
/// <param name="Storage">How features are stored (resolved: not Auto).</param>
/// <param name="KeyWidth">Features of K each slot stores (0: the model's head_dim).</param>
/// <param name="ValueWidth">Features of V each slot stores (0: the model's head_dim).</param>
/// <param name="KeyWidths">Features of K each (layer, KV head) stores, layer-major (a projection's key ranks); when given,
/// it replaces KeyWidth.</param>
/// <param name="ValueWidths">Likewise for V.</param>
internal sealed record PagedCacheOptions(long? MemoryBytes = null, double MemoryFraction = 0.25, int BlockSize = 16, int MaxSequences = 64,
    KvStorageType Storage = KvStorageType.F32, int KeyWidth = 0, int ValueWidth = 0, IReadOnlyList<int>? KeyWidths = null,
    IReadOnlyList<int>? ValueWidths = null)
{
    /// <summary>The layout these options give a model's cache.</summary>
    public Kernels.PagedLayout LayoutFor(Models.ModelConfig config)
    {
        int heads = config.Layers * config.KvHeads;
        return Kernels.PagedLayout.For(config, BlockSize, Storage, [.. Enumerable.Range(0, heads).Select(KeyWidthOf)],
            [.. Enumerable.Range(0, heads).Select(ValueWidthOf)]);
    }

    /// <summary>The key width options give (layer, KV head) number i (layer-major); 0: head_dim.</summary>
    public int KeyWidthOf(int i) => KeyWidths?[i] ?? KeyWidth;
    /// <summary>The value width options give (layer, KV head) number i (layer-major); 0: head_dim.</summary>
    public int ValueWidthOf(int i) => ValueWidths?[i] ?? ValueWidth;
}
