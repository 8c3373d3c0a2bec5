namespace KvIlgpu.Training;

/// <summary>A float tensor that lives where a training backend computes (host memory or an accelerator).</summary>
internal abstract class TrainingTensor : IDisposable
{
    public int Length { get; protected init; }
    public abstract void Dispose();
}
