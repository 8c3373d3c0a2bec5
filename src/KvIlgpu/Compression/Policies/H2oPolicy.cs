namespace KvIlgpu.Compression;

/// <summary><c>h2o</c>: H2O (Zhang et al., "H2O: Heavy-Hitter Oracle for Efficient Generative Inference of Large
/// Language Models", arXiv 2306.14048). Scorer: plain attention summed over every query, prompt (window 0: all of
/// them, no pooling) and decode. Selection: heavy hitters plus the recent window, the same budget per head.</summary>
internal sealed record H2oPolicy() : EvictionPolicy("h2o",
    new KvScorer(Squared: false, ObservationWindow: 0, PoolKernel: 1, AccumulateDuringDecode: true), new UniformPerHeadSelection());
