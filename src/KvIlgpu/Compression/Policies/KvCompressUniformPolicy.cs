namespace KvIlgpu.Compression;

/// <summary><c>kvcompress-uniform</c>: ablation of KV-Compress (SPEC 3 "uniform"): its scorer (squared attention,
/// window 8, pool 7, accumulated during decode), but every head keeps the same number of KVs.</summary>
internal sealed record KvCompressUniformPolicy() : EvictionPolicy("kvcompress-uniform",
    new KvScorer(Squared: true, ObservationWindow: 8, PoolKernel: 7, AccumulateDuringDecode: true), new UniformPerHeadSelection());
