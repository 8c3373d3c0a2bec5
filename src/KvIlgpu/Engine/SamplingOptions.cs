namespace KvIlgpu.Engine;

/// <summary>How the next token is drawn. Temperature 0 means greedy (argmax).</summary>
/// <param name="TopK">Keep only the K most likely tokens (0: all).</param>
/// <param name="TopP">Keep the smallest set of tokens whose probability reaches P (1: all).</param>
/// <param name="Seed">Seed of the random draw; the same seed gives the same tokens.</param>
public sealed record SamplingOptions(float Temperature = 0f, int TopK = 0, float TopP = 1f, int Seed = 0)
{
    public static SamplingOptions Greedy { get; } = new();

    public void Validate()
    {
        if (Temperature < 0 || float.IsNaN(Temperature)) throw new ArgumentOutOfRangeException(nameof(Temperature), $"--temperature must be >= 0 (got {Temperature})");
        if (TopK < 0) throw new ArgumentOutOfRangeException(nameof(TopK), $"--top-k must be >= 0 (got {TopK})");
        if (!(TopP > 0 && TopP <= 1)) throw new ArgumentOutOfRangeException(nameof(TopP), $"--top-p must be in (0, 1] (got {TopP})");
    }
}

/// <summary>One generation request.</summary>
/// <param name="MaxTokens">Most tokens to generate; generation also stops at EOS and at the context length.</param>
/// <param name="Compression">KV cache compression for this request; null keeps the full cache.</param>
/// <param name="ForcedTokens">Teacher forcing (evaluation): these tokens are fed instead of sampled ones.</param>
/// <param name="OnLogits">Called with (position of the predicted token, logits) at every step (evaluation).</param>
public sealed record GenerationOptions(int MaxTokens = 256, SamplingOptions? Sampling = null, bool StopAtEos = true,
    Compression.CompressionOptions? Compression = null, IReadOnlyList<int>? ForcedTokens = null, Action<int, float[]>? OnLogits = null)
{
    public SamplingOptions SamplingOrDefault => Sampling ?? SamplingOptions.Greedy;
}

/// <summary>Where the model runs and how its KV cache and batches are sized.</summary>
/// <param name="KvMemoryBytes">KV cache budget (blocks plus metadata); null: room for 8 full-context sequences,
/// at most KvMemoryFraction of the device's memory.</param>
/// <param name="BlockSize">Tokens per KV block.</param>
/// <param name="MaxBatchSize">Most sequences decoded together.</param>
/// <param name="MaxTokensPerStep">Most tokens in one forward step (prompt chunks plus decode tokens).</param>
public sealed record EngineOptions(
    Compute.DeviceKind Device = Compute.DeviceKind.Auto,
    int? CpuThreads = null,
    long? KvMemoryBytes = null,
    double KvMemoryFraction = 0.25,
    int BlockSize = 16,
    int MaxBatchSize = 32,
    int MaxTokensPerStep = 256);
