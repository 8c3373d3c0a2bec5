namespace KvIlgpu.Compression;

/// <summary><c>full</c>: the uncompressed cache, every KV kept. It gathers no metric.</summary>
internal sealed record FullCachePolicy() : EvictionPolicy("full",
    new KvScorer(Squared: false, ObservationWindow: 0, PoolKernel: 1, AccumulateDuringDecode: false), new KeepAllSelection());
