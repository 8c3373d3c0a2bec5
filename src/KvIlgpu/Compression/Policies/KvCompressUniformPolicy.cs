namespace KvIlgpu.Compression;

/// <summary><c>kvcompress-uniform</c>: ablation of KV-Compress (SPEC 3 "uniform"): its scorer (squared attention,
/// window 8, pool 7, accumulated during decode, averaged), but every head keeps the same number of KVs.</summary>
internal sealed record KvCompressUniformPolicy() : EvictionPolicy("kvcompress-uniform", KvCompressPolicy.DefaultScorer,
    new UniformPerHeadSelection());
