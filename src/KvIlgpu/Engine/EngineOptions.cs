namespace KvIlgpu.Engine;

/// <summary>Where the model runs and how its KV cache and batches are sized.</summary>
/// <param name="Device">Where the kernels run: CUDA when present (Auto), the managed SIMD CPU backend (Cpu), the ILGPU
/// kernels on CUDA or on ILGPU's CPU accelerator (a slow path for testing kernels).</param>
/// <param name="CpuThreads">Threads of the managed CPU backend; null: every core.</param>
/// <param name="KvMemoryBytes">KV cache budget (blocks plus metadata); null: room for 8 full-context sequences,
/// at most KvMemoryFraction of the device's memory.</param>
/// <param name="KvMemoryFraction">The most of the device's memory the default KV cache takes.</param>
/// <param name="BlockSize">Tokens per KV block.</param>
/// <param name="MaxBatchSize">Most sequences decoded together.</param>
/// <param name="MaxTokensPerStep">Most tokens in one forward step (prompt chunks plus decode tokens).</param>
/// <param name="KvProjection">MatryoshkaKV projections applied to every request's keys and values at the projection's
/// ranks (load one with <see cref="Projection.KvProjectionFile.Load(string, Models.ModelConfig)"/>; a uniform rank with
/// <see cref="Projection.KvProjection.WithUniformRanks"/>); null: none.</param>
public sealed record EngineOptions(
    Compute.DeviceKind Device = Compute.DeviceKind.Auto,
    int? CpuThreads = null,
    long? KvMemoryBytes = null,
    double KvMemoryFraction = 0.25,
    int BlockSize = 16,
    int MaxBatchSize = 32,
    int MaxTokensPerStep = 256,
    Projection.KvProjection? KvProjection = null);
