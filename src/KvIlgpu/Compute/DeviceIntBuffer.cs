namespace KvIlgpu.Compute;

/// <summary>An int32 buffer on a backend's device (block tables, lengths, positions, row descriptors).</summary>
internal abstract class DeviceIntBuffer : IDisposable
{
    public int Length { get; protected init; }
    public abstract void Dispose();
}
