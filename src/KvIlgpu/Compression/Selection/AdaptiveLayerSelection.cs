using KvIlgpu.Cache;

namespace KvIlgpu.Compression;

/// <summary>Each layer's budget (the per-head budget times its heads) goes to the layer's highest-scoring KVs across
/// its heads, with every head guaranteed a floor of <see cref="Floor"/> of the per-head budget (Ada-KV).</summary>
/// <param name="Floor">Share of the per-head budget every head keeps of its own best KVs (default 0.2).</param>
internal sealed record AdaptiveLayerSelection(double Floor = 0.2) : ISelectionRule
{
    /// <inheritdoc/>
    public EvictionPlan Select(IReadOnlyList<HeadSlots> heads, SelectionContext context)
    {
        var uniform = PerHeadSelection.UniformKeep(heads, context);
        var keep = new int[heads.Count];
        foreach (var layer in Enumerable.Range(0, heads.Count).GroupBy(i => heads[i].Layer))
        {
            var members = layer.ToList();
            int layerBudget = members.Sum(i => uniform[i]);
            // Floors first (the best KVs of each head), then the layer's remaining budget by score across its heads.
            var floor = members.ToDictionary(i => i, i => (int)Math.Floor(Floor * uniform[i]));
            var ranked = members.SelectMany(i => Enumerable.Range(0, heads[i].Length)
                    .Where(t => !context.IsProtected(heads[i], t))
                    .OrderByDescending(t => heads[i].Metric[t]).ThenBy(t => t)
                    .Select((t, rank) => (Head: i, Score: heads[i].Metric[t], Rank: rank)))
                .ToList();
            foreach (var i in members) keep[i] = heads[i].Length - Enumerable.Range(0, heads[i].Length).Count(t =>
                !context.IsProtected(heads[i], t));
            int left = layerBudget - members.Sum(i => keep[i]);
            foreach (var r in ranked.Where(r => r.Rank < floor[r.Head])) { keep[r.Head]++; left--; }
            foreach (var r in ranked.Where(r => r.Rank >= floor[r.Head]).OrderByDescending(r => r.Score).ThenBy(r => r.Head).ThenBy(r =>
                r.Rank))
            {
                if (left <= 0) break;
                keep[r.Head]++;
                left--;
            }
        }
        return PerHeadSelection.Keep(heads, keep, context);
    }
}
