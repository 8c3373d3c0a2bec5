using KvIlgpu.Compute;

namespace KvIlgpu.Models;

/// <summary>What a batched step should do for eviction metrics: per row, what its attention probabilities add to the
/// slots' metrics on the device (decode queries; each row its own request's mode), and rows whose per-head
/// probabilities are handed to a sink (prefill observation-window queries) as (layer, probs [Heads * stride], stride).</summary>
internal sealed record MetricRequest(MetricAccumulation[]? Accumulate, IReadOnlyList<(int Row, Action<int, float[], int> Sink)> WindowRows);
