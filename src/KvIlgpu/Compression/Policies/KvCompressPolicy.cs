namespace KvIlgpu.Compression;

/// <summary><c>kvcompress</c>: KV-Compress (Rehg, "KV-Compress: Paged KV-Cache Compression with Variable Compression
/// Rates per Attention Head", arXiv 2410.00161). Scorer: squared attention of the last 8 prompt queries, max-pooled
/// with kernel 7, then every decode query's squared attention added. Selection: block-granular chunks ranked across
/// all heads and layers of the sequence (SPEC 3), so heads end with different lengths.</summary>
internal sealed record KvCompressPolicy() : EvictionPolicy("kvcompress",
    new KvScorer(Squared: true, ObservationWindow: 8, PoolKernel: 7, AccumulateDuringDecode: true), new CrossHeadChunkSelection());
