namespace KvIlgpu.Cache;

/// <summary>The cached KVs of one (layer, KV head) as eviction sees them: each slot's eviction metric and original
/// position, in the head's logical slot order, and how many of the head's tokens one cache block holds (heads of
/// different widths hold different numbers; block-granular eviction frees whole blocks of each).</summary>
internal sealed record HeadSlots(int Layer, int KvHead, float[] Metric, int[] Positions, int TokensPerBlock)
{
    public int Length => Metric.Length;
}
