namespace KvIlgpu.Compute;

/// <summary>A RoPE cos/sin table on a backend's device.</summary>
internal sealed class DeviceRope(DeviceBuffer cos, DeviceBuffer sin, int halfDim) : IDisposable
{
    public DeviceBuffer Cos { get; } = cos;
    public DeviceBuffer Sin { get; } = sin;
    public int HalfDim { get; } = halfDim;
    public void Dispose() { Cos.Dispose(); Sin.Dispose(); }
}
