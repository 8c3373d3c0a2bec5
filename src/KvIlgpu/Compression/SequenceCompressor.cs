using KvIlgpu.Compute;
using KvIlgpu.Cache;

namespace KvIlgpu.Compression;

/// <summary>Runs one compression of one sequence: read every head's metrics, plan (SPEC 3), compact.</summary>
public static class SequenceCompressor
{
    /// <param name="promptLength">Tokens of the prefill that seeded the metric (for the average variant).</param>
    /// <returns>How many KVs were evicted.</returns>
    public static int Compress(PagedKvCache cache, int sequence, int sequenceLength, CompressionOptions options, int promptLength = 0)
    {
        if (!options.Evicts) return 0;
        var policy = options.EvictionPolicy;
        // KV-Compress's budget is global: when the sequence already fits it, there is nothing to read back or plan.
        if (policy is KvCompressPolicy && options.Budget.MaxCacheTokens is int perHead
            && cache.SequenceLength(sequence) <= (long)perHead * cache.HeadsPerSequence) return 0;
        if (policy is KvCompressPolicy && !options.Average && PlansOnDevice(cache))
        {
            // The metrics stay on the GPU: plan there, then compact with the lengths alone.
            var devicePlan = DeviceEvictionPlanner.For((IlgpuBackend)cache.Backend).Plan(cache, sequence, sequenceLength, options.Budget);
            if (devicePlan.TotalEvicted > 0) Compactor.Apply(cache, sequence, HeadShapes(cache, sequence), devicePlan);
            return devicePlan.TotalEvicted;
        }
        var heads = cache.ReadHeads(sequence);
        if (options.Average) heads = heads.Select(h => Averaged(h, sequenceLength, promptLength, options)).ToList();
        var plan = policy.Plan(heads, cache.Layout.BlockSize, sequenceLength, options.Budget, cache.Layout.Layers);
        if (plan.TotalEvicted > 0) Compactor.Apply(cache, sequence, heads, plan);
        return plan.TotalEvicted;
    }

    /// <summary>Whether KV-Compress plans on the device: on CUDA always (ILGPU.Algorithms sorts there are fast); on the
    /// CPU accelerator only when asked (its simulated radix sort takes seconds), which tests do.</summary>
    internal static bool PlansOnDevice(PagedKvCache cache) =>
        cache.Backend is IlgpuBackend ilgpu && (ilgpu.Kind == DeviceKind.Cuda || DevicePlanningOnCpuAccelerator);

    /// <summary>Test switch: plan on ILGPU's CPU accelerator too.</summary>
    internal static bool DevicePlanningOnCpuAccelerator { get; set; }

    private static List<(int Layer, int KvHead, int Length)> HeadShapes(PagedKvCache cache, int sequence) =>
        Enumerable.Range(0, cache.Layout.Layers).SelectMany(l => Enumerable.Range(0, cache.Layout.KvHeads)
            .Select(h => (l, h, cache.Length(sequence, l, h)))).ToList();

    /// <summary>The head with each metric divided by how many queries could see that KV: the window queries of the
    /// prefill at or after its position, plus (when the policy accumulates during decode) every decode query since.</summary>
    public static HeadSlots Averaged(HeadSlots head, int sequenceLength, int promptLength, CompressionOptions options)
    {
        int window = options.EffectiveWindow == 0 ? promptLength : Math.Min(options.EffectiveWindow, promptLength);
        bool decode = options.EvictionPolicy.AccumulateDuringDecode;
        var metric = new float[head.Length];
        for (int t = 0; t < head.Length; t++)
        {
            int p = head.Positions[t];
            int seen = (p < promptLength ? promptLength - Math.Max(p, promptLength - window) : 0)
                + (decode ? Math.Max(0, sequenceLength - Math.Max(p, promptLength)) : 0);
            metric[t] = head.Metric[t] / Math.Max(1, seen);
        }
        return head with { Metric = metric };
    }

    /// <summary>Writes the prefill metric (observation window) into a freshly prefilled sequence, whose slots are
    /// still in position order.</summary>
    public static void SeedMetric(PagedKvCache cache, int sequence, ObservationWindowMetric window, CompressionOptions options, int groupSize)
    {
        for (int layer = 0; layer < cache.Layout.Layers; layer++)
            for (int h = 0; h < cache.Layout.KvHeads; h++)
                cache.WriteMetric(sequence, layer, h, window.Finish(layer, h, groupSize, options.EffectivePoolKernel));
    }
}
