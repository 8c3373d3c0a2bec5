using KvIlgpu.Cache;

namespace KvIlgpu.Compression;

/// <summary>What a selection rule needs besides the heads.</summary>
/// <param name="SequenceLength">Tokens the sequence has seen (positions 0 .. SequenceLength - 1).</param>
/// <param name="Budget">How many KVs may stay, and which are protected.</param>
/// <param name="Layers">Decoder layers (layer-dependent budgets).</param>
/// <param name="PolicySinks">First positions the policy itself always keeps, on top of <see cref="EvictionBudget.Sinks"/>.</param>
/// <param name="Average">How metrics are averaged before ranking (default: not at all); a device plan applies it where
/// the metrics are, a host plan gets heads already averaged.</param>
internal sealed record SelectionContext(int SequenceLength, EvictionBudget Budget, int Layers, int PolicySinks = 0,
    Kernels.MetricAverage Average = default)
{
    /// <summary>Whether a slot is never evicted: in the protected window of recent positions, or among the sinks.</summary>
    public bool IsProtected(HeadSlots head, int slot) =>
        head.Positions[slot] >= SequenceLength - Budget.ProtectedWindow || head.Positions[slot] < Math.Max(PolicySinks, Budget.Sinks);
}
