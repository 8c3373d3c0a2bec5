using KvIlgpu.Cache;
using KvIlgpu.Compute;

namespace KvIlgpu.Compression;

/// <summary>How a policy splits its budget: given every head of one sequence with a score per cached KV (higher is
/// worth more; <see cref="HeadSlots.Metric"/> holds the policy scorer's scores), which KVs each head evicts. A rule
/// returns a plan and never touches memory; the <see cref="Compactor"/> carries plans out.</summary>
internal interface ISelectionRule
{
    /// <summary>Whether the budget bounds the sequence's KVs in total (so a sequence within it needs no plan at all)
    /// rather than each head's or each layer's.</summary>
    bool BoundsSequenceTotal => false;

    /// <summary>Whether the rule ever evicts (false only for the full cache).</summary>
    bool Evicts => true;

    /// <summary>The KVs to evict from every head (heads in (layer, KV head) order).</summary>
    EvictionPlan Select(IReadOnlyList<HeadSlots> heads, SelectionContext context);

    /// <summary>The same plan computed where the cache lives, when the backend offers device planning and the rule
    /// has a device form; null to plan on the host instead. The scores are the raw metrics on the device.</summary>
    EvictionPlan? SelectOnDevice(IDeviceEvictionPlanner planner, PagedKvCache cache, int sequence, SelectionContext context) => null;
}
