namespace KvIlgpu.Compute;

/// <summary>Shape of a causal attention call over a dense per-layer cache laid out [position, kvHeads * headDim].
/// Query row r sits at position StartPosition + r and sees positions 0 ..= StartPosition + r.</summary>
internal readonly record struct AttentionShape(int Rows, int StartPosition, int Heads, int KvHeads, int HeadDim, int CacheOffset)
{
    public int QDim => Heads * HeadDim;
    public int KvDim => KvHeads * HeadDim;
}
