namespace KvIlgpu.Compression;

/// <summary><c>adakv</c>: Ada-KV (Feng et al., "Ada-KV: Optimizing KV Cache Eviction by Adaptive Budget Allocation
/// for Efficient LLM Inference", arXiv 2407.11550). Scorer: SnapKV's (plain attention, window 8, pool 7, prefill
/// only). Selection: each layer's budget goes to its best KVs across heads, with a floor of 20% of the per-head budget
/// for every head.</summary>
internal sealed record AdaKvPolicy() : EvictionPolicy("adakv",
    new KvScorer(Squared: false, ObservationWindow: 8, PoolKernel: 7, AccumulateDuringDecode: false),
        new AdaptiveLayerSelection(Floor: 0.2));
