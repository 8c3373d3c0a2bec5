namespace KvIlgpu.Engine;

/// <summary>Counters of the scheduler since it started.</summary>
public sealed record SchedulerStats(int BlocksTotal, int BlocksUsed, int BlocksFree, int Running, int Waiting, int MaxBatchReached,
    long Preemptions, long GeneratedTokens, long Steps, double TokensPerSecond, long KvBytesTotal, long PeakKvBytes, long EvictedKvs = 0);
