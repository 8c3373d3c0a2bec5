using KvIlgpu.Cache;

namespace KvIlgpu.Compression;

/// <summary>How a policy scores cached KVs (SPEC 2): which attention feeds each KV's metric, and how the metric becomes
/// the score its selection rule ranks (the metric itself, unless a scorer says otherwise).</summary>
/// <param name="Squared">Sum squared attention probabilities (L2) rather than plain ones (L1).</param>
/// <param name="ObservationWindow">Last prompt queries whose attention seeds the metric after prefill (0: every prompt
/// query).</param>
/// <param name="PoolKernel">Max-pool width along the keys of the prefill metric (odd; 1: no pooling).</param>
/// <param name="AccumulateDuringDecode">Whether every decode query keeps adding its attention to the metric.</param>
/// <param name="Average">Whether KVs rank by their metric divided by the queries that could see them (SPEC 2's average
/// variant) rather than by the sum.</param>
internal record KvScorer(bool Squared, int ObservationWindow, int PoolKernel, bool AccumulateDuringDecode, bool Average = false)
{
    /// <summary>Whether the scores are the metrics themselves, so a selection rule may rank the metrics where the cache
    /// keeps them (on the device).</summary>
    public virtual bool ScoresAreMetrics => true;

    /// <summary>The scores a selection rule ranks, in the head's slot order (higher: more worth keeping).</summary>
    public virtual float[] Scores(HeadSlots head) => head.Metric;

    /// <summary>The head with its metric replaced by this scorer's scores, as selection rules read them.</summary>
    public HeadSlots Scored(HeadSlots head)
    {
        var scores = Scores(head);
        return ReferenceEquals(scores, head.Metric) ? head : head with { Metric = scores };
    }
}
