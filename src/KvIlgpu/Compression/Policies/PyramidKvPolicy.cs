namespace KvIlgpu.Compression;

/// <summary><c>pyramidkv</c>: PyramidKV (Cai et al., "PyramidKV: Dynamic KV Cache Compression based on Pyramidal
/// Information Funneling", arXiv 2406.02069). Scorer: SnapKV's (plain attention, window 8, pool 7, prefill only).
/// Selection: per-head budgets falling linearly from 1.5x the average at the first layer to 0.5x at the last.</summary>
internal sealed record PyramidKvPolicy() : EvictionPolicy("pyramidkv",
    new KvScorer(Squared: false, ObservationWindow: 8, PoolKernel: 7, AccumulateDuringDecode: false),
        new PyramidSelection(FirstLayerScale: 1.5));
