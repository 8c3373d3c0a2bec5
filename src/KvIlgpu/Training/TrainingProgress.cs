namespace KvIlgpu.Training;

/// <summary>Where training stands, for progress display.</summary>
public sealed record TrainingProgress(string Stage, int Step, int Steps, float Loss, float? ValidationLoss, double TokensPerSecond,
    float LearningRate);
