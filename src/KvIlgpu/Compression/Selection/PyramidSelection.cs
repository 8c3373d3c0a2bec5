using KvIlgpu.Cache;

namespace KvIlgpu.Compression;

/// <summary>Per-head budgets that fall linearly over the layers (PyramidKV): the uniform per-head budget times
/// <see cref="FirstLayerScale"/> at the first layer down to 2 - FirstLayerScale at the last, so the average is kept;
/// each head then keeps its best-scoring KVs.</summary>
/// <param name="FirstLayerScale">Budget of the first layer relative to the average (default 1.5: 1.5x down to 0.5x).</param>
internal sealed record PyramidSelection(double FirstLayerScale = 1.5) : ISelectionRule
{
    /// <inheritdoc/>
    public EvictionPlan Select(IReadOnlyList<HeadSlots> heads, SelectionContext context)
    {
        var uniform = PerHeadSelection.UniformKeep(heads, context);
        double span = 2 * (FirstLayerScale - 1);
        var keep = heads.Select((h, i) =>
        {
            double scale = context.Layers == 1 ? 1.0 : FirstLayerScale - span * h.Layer / (context.Layers - 1);
            return (int)Math.Round(uniform[i] * scale);
        }).ToArray();
        return PerHeadSelection.Keep(heads, keep, context);
    }
}
