using KvIlgpu.Cache;

namespace KvIlgpu.Compression;

/// <summary>Runs one compression of one sequence: score every head's KVs, let the policy's selection rule plan
/// (SPEC 3), compact. Where the backend offers device planning and the rule has a device form, the metrics never
/// leave the device.</summary>
internal static class SequenceCompressor
{
    /// <summary>Compresses one sequence of the cache to its budget.</summary>
    /// <param name="cache">The paged cache holding the sequence.</param>
    /// <param name="sequence">The sequence's slot in the cache.</param>
    /// <param name="sequenceLength">Tokens the sequence has seen (positions 0 .. sequenceLength - 1).</param>
    /// <param name="options">The request's compression settings.</param>
    /// <param name="promptLength">Tokens of the prefill that seeded the metric (for the average variant).</param>
    /// <returns>How many KVs were evicted.</returns>
    public static int Compress(PagedKvCache cache, int sequence, int sequenceLength, CompressionOptions options, int promptLength = 0)
    {
        var policy = options.EvictionPolicy;
        if (!policy.Evicts) return 0;
        if (options.Budget.MaxCacheBytes != null)
            options = options with { Budget = options.Budget.InTokens(cache.Layout.BytesPerSlot, cache.HeadsPerSequence) };
        // A budget on the sequence's total: when the sequence already fits it, there is nothing to read back or plan.
        if (policy.Selection.BoundsSequenceTotal && options.Budget.MaxCacheTokens is int perHead
            && cache.SequenceLength(sequence) <= (long)perHead * cache.HeadsPerSequence) return 0;
        var context = new SelectionContext(sequenceLength, options.Budget, cache.Layout.Layers, policy.Sinks,
            options.EffectiveAverage ? AverageOf(sequenceLength, promptLength, options) : default);
        if (policy.Scorer.ScoresAreMetrics && cache.Backend.EvictionPlanner is { } planner
            && policy.Selection.SelectOnDevice(planner, cache, sequence, context) is { } devicePlan)
        {
            // Planned where the metrics are: compact with the lengths alone.
            if (devicePlan.TotalEvicted > 0) Compactor.Apply(cache, sequence, HeadLengths(cache, sequence), devicePlan);
            return devicePlan.TotalEvicted;
        }
        var heads = cache.ReadHeads(sequence);
        var scored = options.EffectiveAverage ? heads.Select(h => Averaged(h, sequenceLength, promptLength, options)).ToList() : heads;
        var plan = policy.Plan(scored, sequenceLength, options.Budget, cache.Layout.Layers);
        if (plan.TotalEvicted > 0) Compactor.Apply(cache, sequence, heads, plan);
        return plan.TotalEvicted;
    }

    private static List<(int Layer, int KvHead, int Length)> HeadLengths(PagedKvCache cache, int sequence) =>
        Enumerable.Range(0, cache.Layout.Layers).SelectMany(l => Enumerable.Range(0, cache.Layout.KvHeads)
            .Select(h => (l, h, cache.Length(sequence, l, h)))).ToList();

    /// <summary>The head with each metric divided by how many queries could see that KV: the window queries of the
    /// prefill at or after its position, plus (when the policy accumulates during decode) every decode query since.</summary>
    public static HeadSlots Averaged(HeadSlots head, int sequenceLength, int promptLength, CompressionOptions options)
    {
        var average = AverageOf(sequenceLength, promptLength, options);
        var metric = new float[head.Length];
        for (int t = 0; t < head.Length; t++) metric[t] = average.Score(head.Metric[t], head.Positions[t]);
        return head with { Metric = metric };
    }

    private static Kernels.MetricAverage AverageOf(int sequenceLength, int promptLength, CompressionOptions options) =>
        new(true, promptLength, options.EffectiveWindow == 0 ? promptLength : Math.Min(options.EffectiveWindow, promptLength),
            sequenceLength, options.AccumulatesDuringDecode);

    /// <summary>Writes the prefill metric (observation window) into a freshly prefilled sequence, whose slots are
    /// still in position order.</summary>
    public static void SeedMetric(PagedKvCache cache, int sequence, ObservationWindowMetric window, CompressionOptions options,
        int groupSize)
    {
        for (int layer = 0; layer < cache.Layout.Layers; layer++)
            for (int h = 0; h < cache.Layout.KvHeads; h++)
                cache.WriteMetric(sequence, layer, h, window.Finish(layer, h, groupSize, options.EffectivePoolKernel));
    }
}
