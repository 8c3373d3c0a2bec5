using KvIlgpu.Cache;

namespace KvIlgpu.Compression;

/// <summary>KV-Compress's chunks ranked within each layer only (SPEC 3 "even-per-layer" ablation): every layer is held
/// to the budget on its own, so the heads of a layer still compete but layers do not.</summary>
internal sealed class PerLayerChunkSelection : ISelectionRule
{
    /// <inheritdoc/>
    public EvictionPlan Select(IReadOnlyList<HeadSlots> heads, SelectionContext context)
    {
        var evicted = new int[heads.Count][];
        foreach (var layer in Enumerable.Range(0, heads.Count).GroupBy(i => heads[i].Layer))
        {
            var members = layer.ToList();
            var plan = CrossHeadChunkSelection.Plan([.. members.Select(i => heads[i])], context.SequenceLength,
                context.Budget);
            for (int k = 0; k < members.Count; k++) evicted[members[k]] = [.. plan.Evicted[k]];
        }
        return new EvictionPlan(evicted);
    }
}
