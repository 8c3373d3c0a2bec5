using KvIlgpu.Compute;
using KvIlgpu.Models;

namespace KvIlgpu.Engine;

/// <summary>What the schedule step decided for one forward step: the rows (decode tokens first, then prompt chunks),
/// which rows give logits and to which sequence, and what each row feeds the eviction metrics.</summary>
internal sealed class StepBatch
{
    /// <summary>The rows of the step, in order.</summary>
    public List<BatchRow> Rows { get; } = [];
    /// <summary>Rows whose logits are read back: the last row of every sequence that has no prompt left to feed.</summary>
    public List<int> LogitRows { get; } = [];
    /// <summary>The sequence each logit row belongs to, in the same order.</summary>
    public List<Sequence> Sampled { get; } = [];
    /// <summary>Per row, what its decode query adds to the metric (its own request's mode).</summary>
    public List<MetricAccumulation> Accumulate { get; } = [];
    /// <summary>Prefill rows in an observation window, with where their probabilities go.</summary>
    public List<(int Row, Action<int, float[], int> Sink)> WindowRows { get; } = [];
    /// <summary>Rows whose queries (after RoPE, [Heads * HeadDim]) go to a sink per layer (ThinK's window).</summary>
    public List<(int Row, Action<int, float[]> Sink)> QueryRows { get; } = [];
    /// <summary>Per row, its request's ThinK key mask (per layer [KvHeads * HeadDim]) or null.</summary>
    public List<float[][]?> KeyMasks { get; } = [];

    /// <summary>The metric work of the step, or null when no row feeds a metric.</summary>
    public MetricRequest? Metric =>
        Accumulate.Any(a => a != MetricAccumulation.None) || WindowRows.Count > 0 || QueryRows.Count > 0 || KeyMasks.Any(m => m != null)
            ? new MetricRequest([.. Accumulate], WindowRows, QueryRows, KeyMasks.Any(m => m != null) ? KeyMasks : null)
            : null;
}
