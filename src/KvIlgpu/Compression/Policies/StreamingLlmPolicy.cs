namespace KvIlgpu.Compression;

/// <summary><c>streamingllm</c>: StreamingLLM (Xiao et al., "Efficient Streaming Language Models with Attention
/// Sinks", arXiv 2309.17453). Scorer: recency. Selection: the same budget per head; the first 4 positions (attention
/// sinks) are always kept.</summary>
internal sealed record StreamingLlmPolicy() : EvictionPolicy("streamingllm", new RecencyScorer(), new UniformPerHeadSelection(), Sinks: 4);
