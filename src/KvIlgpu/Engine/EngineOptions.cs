namespace KvIlgpu.Engine;

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
