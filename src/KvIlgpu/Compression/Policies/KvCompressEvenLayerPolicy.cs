namespace KvIlgpu.Compression;

/// <summary><c>kvcompress-layer</c>: ablation of KV-Compress (SPEC 3 "even-per-layer"): its scorer (squared attention,
/// window 8, pool 7, accumulated during decode, averaged), with chunks ranked within each layer, every layer held to
/// the budget.</summary>
internal sealed record KvCompressEvenLayerPolicy() : EvictionPolicy("kvcompress-layer", KvCompressPolicy.DefaultScorer,
    new PerLayerChunkSelection());
