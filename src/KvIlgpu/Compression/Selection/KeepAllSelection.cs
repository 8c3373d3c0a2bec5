using KvIlgpu.Cache;

namespace KvIlgpu.Compression;

/// <summary>The full cache: nothing is ever evicted.</summary>
internal sealed class KeepAllSelection : ISelectionRule
{
    /// <inheritdoc/>
    public bool Evicts => false;

    /// <inheritdoc/>
    public EvictionPlan Select(IReadOnlyList<HeadSlots> heads, SelectionContext context) => new([.. heads.Select(_ => Array.Empty<int>())]);
}
