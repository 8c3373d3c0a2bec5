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

    /// <summary>Writes floats as their bit patterns into an int buffer (an f32 K or V pool).</summary>
    public static void WriteFloatBits(this IComputeBackend backend, DeviceIntBuffer dst, ReadOnlySpan<float> src) =>
        backend.WriteInts(dst, System.Runtime.InteropServices.MemoryMarshal.Cast<float, int>(src));

    /// <summary>An int buffer's words read back as floats (an f32 K or V pool).</summary>
    public static float[] ToFloatBits(this IComputeBackend backend, DeviceIntBuffer buffer)
    {
        var a = new float[buffer.Length];
        backend.ReadInts(buffer, System.Runtime.InteropServices.MemoryMarshal.Cast<float, int>(a.AsSpan()));
        return a;
    }
}
