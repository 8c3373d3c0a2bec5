namespace KvIlgpu.Compute;

/// <summary>What a decode row adds to the eviction metric of the slots it attends to, chosen per row so that one batched
/// step can serve requests with different policies and metrics (the values are what the kernels read).</summary>
internal enum MetricAccumulation
{
    /// <summary>The row adds nothing (no compression, or a policy whose metric is fixed after prefill).</summary>
    None = 0,
    /// <summary>Plain attention probabilities, summed over the query heads of the KV head's group (L1).</summary>
    Plain = 1,
    /// <summary>Squared attention probabilities, summed over the group (L2, KV-Compress's metric).</summary>
    Squared = 2,
}
