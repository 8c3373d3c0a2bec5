namespace KvIlgpu.Kernels;

/// <summary>Sizes of a causal attention launch over a dense per-layer cache [position, kvHeads * headDim].</summary>
internal struct AttentionParams
{
    public int Rows, StartPosition, Heads, KvHeads, HeadDim, CacheOffset, ScoreStride;
}
