namespace KvIlgpu.Engine;

/// <summary>One generation request.</summary>
/// <param name="MaxTokens">Most tokens to generate; generation also stops at EOS and at the context length.</param>
/// <param name="Sampling">How tokens are drawn; null: greedy.</param>
/// <param name="StopAtEos">Whether an end-of-sequence token ends the request.</param>
/// <param name="Compression">KV cache compression for this request; null keeps the full cache.</param>
/// <param name="ForcedTokens">Teacher forcing (evaluation): these tokens are fed instead of sampled ones.</param>
/// <param name="OnLogits">Called with (position of the predicted token, logits) at every step (evaluation).</param>
/// <param name="ThinK">ThinK's query-driven key channel pruning for this request (null: none).</param>
public sealed record GenerationOptions(int MaxTokens = 256, SamplingOptions? Sampling = null, bool StopAtEos = true,
    Compression.CompressionOptions? Compression = null, IReadOnlyList<int>? ForcedTokens = null, Action<int, float[]>? OnLogits = null,
    Projection.ThinKOptions? ThinK = null)
{
    /// <summary>The sampling in force: <see cref="Sampling"/>, or greedy.</summary>
    public SamplingOptions SamplingOrDefault => Sampling ?? SamplingOptions.Greedy;
}
