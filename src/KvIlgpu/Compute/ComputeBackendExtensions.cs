using KvIlgpu.Models;

namespace KvIlgpu.Compute;

internal static class ComputeBackendExtensions
{
    public static DeviceRope UploadRope(this IComputeBackend backend, RopeTable table)
    {
        var cos = backend.Allocate(table.Cos.Length);
        var sin = backend.Allocate(table.Sin.Length);
        backend.Write(cos, table.Cos);
        backend.Write(sin, table.Sin);
        return new DeviceRope(cos, sin, table.HalfDim);
    }

    public static DeviceBuffer Upload(this IComputeBackend backend, ReadOnlySpan<float> data)
    {
        var b = backend.Allocate(data.Length);
        backend.Write(b, data);
        return b;
    }

    public static float[] ToArray(this IComputeBackend backend, DeviceBuffer buffer)
    {
        var a = new float[buffer.Length];
        backend.Read(buffer, a);
        return a;
    }
}
