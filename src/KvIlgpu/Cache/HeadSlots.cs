namespace KvIlgpu.Cache;

/// <summary>The cached KVs of one (layer, KV head) as eviction sees them: each slot's eviction metric and original
/// position, in the head's logical slot order.</summary>
internal sealed record HeadSlots(int Layer, int KvHead, float[] Metric, int[] Positions)
{
    public int Length => Metric.Length;
}
