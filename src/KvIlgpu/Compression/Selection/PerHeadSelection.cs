using KvIlgpu.Cache;

namespace KvIlgpu.Compression;

/// <summary>The per-head selection the baselines share: head i keeps its keep[i] best-scoring KVs (protected ones
/// always), evicting the lowest first; ties go to the lower slot index.</summary>
internal static class PerHeadSelection
{
    /// <summary>Evicts from each head its lowest-scoring unprotected KVs until it holds keep[i].</summary>
    public static EvictionPlan Keep(IReadOnlyList<HeadSlots> heads, IReadOnlyList<int> keep, SelectionContext context)
    {
        var evicted = new int[heads.Count][];
        for (int i = 0; i < heads.Count; i++)
        {
            var h = heads[i];
            var candidates = Enumerable.Range(0, h.Length).Where(t => !context.IsProtected(h, t))
                .OrderBy(t => h.Metric[t]).ThenBy(t => t).ToList();
            int excess = Math.Max(0, h.Length - keep[i]);
            evicted[i] = [.. candidates.Take(Math.Min(excess, candidates.Count))];
        }
        return new EvictionPlan(evicted);
    }

    /// <summary>Per-head keep count for a budget: MaxCacheTokens, or its protected KVs plus KeepRate of the rest.</summary>
    public static int[] UniformKeep(IReadOnlyList<HeadSlots> heads, SelectionContext context) =>
        [.. heads.Select(h =>
        {
            if (context.Budget.MaxCacheTokens is int perHead) return perHead;
            int evictable = Enumerable.Range(0, h.Length).Count(t => !context.IsProtected(h, t));
            return h.Length - evictable + (int)Math.Ceiling(context.Budget.KeepRate!.Value * evictable);
        })];
}
