using KvIlgpu.Cache;

namespace KvIlgpu.Compression;

/// <summary>Recency alone: a KV's score is its position, so the most recent are kept (StreamingLLM). The attention
/// metric is still gathered (plain, window 8, pool 7, as SnapKV's) but never decides.</summary>
internal sealed record RecencyScorer() : KvScorer(Squared: false, ObservationWindow: 8, PoolKernel: 7, AccumulateDuringDecode: false)
{
    /// <inheritdoc/>
    public override bool ScoresAreMetrics => false;

    /// <inheritdoc/>
    public override float[] Scores(HeadSlots head) => [.. head.Positions.Select(p => (float)p)];
}
