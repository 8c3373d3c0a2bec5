using KvIlgpu.Models;

namespace KvIlgpu.Compute;

/// <summary>A weight matrix [Rows, Cols] on a backend's device, in its stored precision.</summary>
internal abstract class DeviceWeight : IDisposable
{
    public int Rows { get; protected init; }
    public int Cols { get; protected init; }
    public WeightType Type { get; protected init; }
    public abstract void Dispose();
}
