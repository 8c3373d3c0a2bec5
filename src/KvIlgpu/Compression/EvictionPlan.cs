namespace KvIlgpu.Compression;

/// <summary>What to evict from each head: logical slot indices, lowest metric first.</summary>
internal sealed record EvictionPlan(IReadOnlyList<int[]> Evicted)
{
    public int TotalEvicted => Evicted.Sum(e => e.Length);
}
