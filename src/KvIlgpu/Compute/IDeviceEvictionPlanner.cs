namespace KvIlgpu.Compute;

/// <summary>A backend's ability to plan KV-Compress's eviction (SPEC 3: chunks ranked across all heads and layers) where
/// its cache lives, so the metrics never leave the device. A backend that offers it returns one from
/// <see cref="IComputeBackend.EvictionPlanner"/>; selection rules with a device form use it.</summary>
internal interface IDeviceEvictionPlanner
{
    /// <summary>For the heads firstHead .. firstHead + lengths.Length - 1 of a paged cache (one sequence's, in
    /// (layer, KV head) order, each with its length and its tokens per block), the logical slots each head evicts: positions at or after
    /// recentFrom and before sinks are protected; the budget is maxCacheTokens per head on average, or keepRate of
    /// the evictable KVs; with average enabled, KVs rank by their averaged metric (SPEC 2's variant). It selects
    /// exactly what the host's <c>CrossHeadChunkSelection</c> selects.</summary>
    int[][] PlanChunks(PagedKvBuffers cache, int firstHead, int[] lengths, int[] blockSizes, int recentFrom, int sinks,
        int? maxCacheTokens, double? keepRate, Kernels.MetricAverage average = default);
}
