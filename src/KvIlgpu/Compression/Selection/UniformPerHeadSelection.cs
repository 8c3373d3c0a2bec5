using KvIlgpu.Cache;

namespace KvIlgpu.Compression;

/// <summary>The same budget for every head: each keeps its best-scoring KVs (SnapKV, H2O, StreamingLLM and the
/// uniform ablation of KV-Compress).</summary>
internal sealed class UniformPerHeadSelection : ISelectionRule
{
    /// <inheritdoc/>
    public EvictionPlan Select(IReadOnlyList<HeadSlots> heads, SelectionContext context) =>
        PerHeadSelection.Keep(heads, PerHeadSelection.UniformKeep(heads, context), context);
}
