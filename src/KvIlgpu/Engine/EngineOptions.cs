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
/// <see cref="Projection.KvProjection.WithUniformRanks"/>); null: none. The cache then stores each head's coordinates
/// only, as wide as the projection's largest key and value ranks.</param>
/// <param name="KvStorage">How cached keys and values are stored: f32, f16, bf16 or q8 (int8 with a scale per token and
/// head); Auto: the model's weight type, f16 for quantised weights.</param>
/// <param name="WarmUp">Whether <see cref="InferenceEngine.Load"/> compiles the CPU decoder's code on a background thread
/// while the weights are read: a small model of zeros in the file's weight types goes through prefill and decode once per
/// process, on the managed CPU backend only, so the first prompt runs compiled code at full speed.</param>
public sealed record EngineOptions(
    Compute.DeviceKind Device = Compute.DeviceKind.Auto,
    int? CpuThreads = null,
    long? KvMemoryBytes = null,
    double KvMemoryFraction = 0.25,
    int BlockSize = 16,
    int MaxBatchSize = 32,
    int MaxTokensPerStep = 256,
    Projection.KvProjection? KvProjection = null,
    Cache.KvStorageType KvStorage = Cache.KvStorageType.Auto,
    bool WarmUp = true)
{
    /// <summary>The storage type Auto means for these weights: their own type (f32, f16, bf16) as vLLM does, and f16 when
    /// the file held them quantised, as llama.cpp does.</summary>
    public static Cache.KvStorageType ResolveStorage(Cache.KvStorageType requested, Models.LlamaWeights weights)
    {
        if (requested != Cache.KvStorageType.Auto)
            return Enum.IsDefined(requested) ? requested
                : throw new InvalidOptionException(nameof(KvStorage), $"{nameof(KvStorage)} {(int)requested} is not a storage type");
        var w = weights.Layers.Count > 0 ? weights.Layers[0].Wq : weights.TokenEmbedding;
        return Models.Quantization.QuantFormats.IsQuantized(w.Type) ? Cache.KvStorageType.F16 : w.Type switch
        {
            Models.WeightType.F16 => Cache.KvStorageType.F16,
            Models.WeightType.BF16 => Cache.KvStorageType.BF16,
            _ => Cache.KvStorageType.F32,
        };
    }
}
