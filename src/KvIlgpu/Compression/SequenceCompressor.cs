using KvIlgpu.Cache;

namespace KvIlgpu.Compression;

/// <summary>Runs one compression of one sequence: read every head's metrics, plan (SPEC 3), compact.</summary>
public static class SequenceCompressor
{
    /// <returns>How many KVs were evicted.</returns>
    public static int Compress(PagedKvCache cache, int sequence, int sequenceLength, CompressionOptions options)
    {
        if (!options.Evicts) return 0;
        var policy = options.EvictionPolicy;
        // KV-Compress's budget is global: when the sequence already fits it, there is nothing to read back or plan.
        if (policy is KvCompressPolicy && options.Budget.MaxCacheTokens is int perHead
            && cache.SequenceLength(sequence) <= (long)perHead * cache.HeadsPerSequence) return 0;
        var heads = cache.ReadHeads(sequence);
        var plan = policy.Plan(heads, cache.Layout.BlockSize, sequenceLength, options.Budget, cache.Layout.Layers);
        if (plan.TotalEvicted > 0) Compactor.Apply(cache, sequence, heads, plan);
        return plan.TotalEvicted;
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
