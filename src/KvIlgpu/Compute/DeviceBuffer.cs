namespace KvIlgpu.Compute;

/// <summary>A float32 activation buffer living on a backend's device.</summary>
internal abstract class DeviceBuffer : IDisposable
{
    public int Length { get; protected init; }
    public abstract void Dispose();
}
