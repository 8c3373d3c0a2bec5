namespace KvIlgpu.Engine;

/// <summary>Limits of continuous batching.</summary>
/// <param name="MaxBatchSize">Most sequences running (holding cache) at once.</param>
/// <param name="MaxTokensPerStep">Most rows (decode tokens plus prompt-chunk tokens) in one forward step.</param>
internal sealed record SchedulerOptions(int MaxBatchSize = 32, int MaxTokensPerStep = 256);
