using KvIlgpu.Cache;

namespace KvIlgpu.Compression;

/// <summary>An eviction policy: a scorer (how each cached KV is scored) plus a selection rule (how the budget is split
/// across heads and layers). Every policy evicts from the same paged cache under the same budget API, so memory is
/// comparable. Policies return plans; the <see cref="Compactor"/> carries them out. The registered ones are in
/// <see cref="EvictionPolicies"/>.</summary>
/// <param name="Name">The name requests and the command line use (<c>--kv-policy</c>, <c>kv_policy</c>).</param>
/// <param name="Scorer">How cached KVs are scored.</param>
/// <param name="Selection">How the budget is split across heads and layers.</param>
/// <param name="Sinks">First positions the policy always keeps, on top of the budget's own sinks.</param>
internal abstract record EvictionPolicy(string Name, KvScorer Scorer, ISelectionRule Selection, int Sinks = 0)
{
    /// <summary>Whether the policy ever evicts (false only for the full cache).</summary>
    public bool Evicts => Selection.Evicts;

    /// <summary>The KVs to evict from every head of one sequence (heads in (layer, KV head) order).</summary>
    public EvictionPlan Plan(IReadOnlyList<HeadSlots> heads, int sequenceLength, EvictionBudget budget, int layers)
    {
        budget.Validate();
        return Selection.Select([.. heads.Select(Scorer.Scored)], new SelectionContext(sequenceLength, budget, layers, Sinks));
    }
}
