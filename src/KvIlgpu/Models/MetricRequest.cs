using KvIlgpu.Compute;

namespace KvIlgpu.Models;

/// <summary>What a batched step should do besides the forward pass, per row: what its attention probabilities add to the
/// slots' eviction metrics on the device (decode queries; each row its own request's mode); rows whose per-head
/// probabilities are handed to a sink (prefill observation-window queries) as (layer, probs [Heads * stride], stride);
/// rows whose queries (after RoPE, [Heads * HeadDim]) are handed to a sink per layer (ThinK's window); and, when
/// KeyMasks is given, each row's key channel mask (per layer [KvHeads * HeadDim], null for none), applied to its keys
/// before they are cached.</summary>
internal sealed record MetricRequest(MetricAccumulation[]? Accumulate, IReadOnlyList<(int Row, Action<int, float[], int> Sink)> WindowRows,
    IReadOnlyList<(int Row, Action<int, float[]> Sink)>? QueryRows = null, IReadOnlyList<float[][]?>? KeyMasks = null);
