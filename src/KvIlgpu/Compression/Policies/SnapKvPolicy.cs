namespace KvIlgpu.Compression;

/// <summary><c>snapkv</c>: SnapKV (Li et al., "SnapKV: LLM Knows What You are Looking for Before Generation",
/// arXiv 2404.14469). Scorer: plain attention of the last 8 prompt queries, max-pooled with kernel 7, not updated
/// during decode. Selection: the same budget per head.</summary>
internal sealed record SnapKvPolicy() : EvictionPolicy("snapkv",
    new KvScorer(Squared: false, ObservationWindow: 8, PoolKernel: 7, AccumulateDuringDecode: false), new UniformPerHeadSelection());
