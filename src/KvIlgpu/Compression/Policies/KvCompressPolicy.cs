namespace KvIlgpu.Compression;

/// <summary><c>kvcompress</c>: KV-Compress (Rehg, "KV-Compress: Paged KV-Cache Compression with Variable Compression
/// Rates per Attention Head", arXiv 2410.00161). Scorer: squared attention of the last 8 prompt queries, max-pooled
/// with kernel 7, then every decode query's squared attention added, each KV ranked by that sum divided by the number
/// of queries that could see it (SPEC 2's squared-average variant: the team's default since the MatryoshkaKV issue,
/// as it kept the SPEC sum's passkey accuracy and lowered KL on the default model; the SPEC's plain sum is
/// <c>kvcompress:squared</c>). Selection: block-granular chunks ranked across all heads and layers of the sequence
/// (SPEC 3), so heads end with different lengths.</summary>
internal sealed record KvCompressPolicy() : EvictionPolicy("kvcompress", DefaultScorer, new CrossHeadChunkSelection())
{
    /// <summary>KV-Compress's scorer, shared by its ablations.</summary>
    public static KvScorer DefaultScorer { get; } = new(Squared: true, ObservationWindow: 8, PoolKernel: 7, AccumulateDuringDecode: true,
        Average: true);
}
