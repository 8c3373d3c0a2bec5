namespace KvIlgpu.Cache;

/// <summary>The cached KVs of one (layer, KV head) as eviction sees them: each slot's eviction metric and original
/// position, in the head's logical slot order, and how many of the head's tokens one cache block holds (null: the
/// cache's BlockSize, as for heads of a cache whose heads all have the same widths).</summary>
internal sealed record HeadSlots(int Layer, int KvHead, float[] Metric, int[] Positions, int? TokensPerBlock = null)
{
    public int Length => Metric.Length;
}
