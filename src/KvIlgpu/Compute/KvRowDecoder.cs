using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using KvIlgpu.Kernels;

namespace KvIlgpu.Compute;

/// <summary>Widens one packed cache row (<see cref="KvCodec"/>'s layout) to f32 on the CPU with SIMD: f16 through
/// TensorPrimitives' conversion, bf16 by shifting 16-bit lanes into the top of 32-bit ones, q8 by widening signed bytes
/// twice and converting. q8 rows are widened to their codes: the caller applies the row's scale once (to the score, or to
/// the probability that weights the row). Each produces exactly what <see cref="KvCodec.LoadRow"/> produces.</summary>
internal static class KvRowDecoder
{
    /// <summary>Widens the first dst.Length features of row into dst (q8: the codes, unscaled).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Decode(ReadOnlySpan<int> row, Span<float> dst, int storage)
    {
        switch (storage)
        {
            case KvCodec.F32:
                MemoryMarshal.Cast<int, float>(row)[..dst.Length].CopyTo(dst);
                break;
            case KvCodec.F16:
                TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<int, Half>(row)[..dst.Length], dst);
                break;
            case KvCodec.BF16:
                DecodeBFloat16(MemoryMarshal.Cast<int, ushort>(row)[..dst.Length], dst);
                break;
            default:
                DecodeCodes(MemoryMarshal.Cast<int, sbyte>(row)[..dst.Length], dst);
                break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DecodeBFloat16(ReadOnlySpan<ushort> src, Span<float> dst)
    {
        int i = 0;
        var bits = MemoryMarshal.Cast<float, uint>(dst);
        for (; i + Vector<ushort>.Count <= src.Length; i += Vector<ushort>.Count)
        {
            Vector.Widen(new Vector<ushort>(src[i..]), out var low, out var high);
            (low << 16).CopyTo(bits[i..]);
            (high << 16).CopyTo(bits[(i + Vector<uint>.Count)..]);
        }
        for (; i < src.Length; i++) bits[i] = (uint)src[i] << 16;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DecodeCodes(ReadOnlySpan<sbyte> src, Span<float> dst)
    {
        int i = 0, n = Vector<int>.Count;
        for (; i + Vector<sbyte>.Count <= src.Length; i += Vector<sbyte>.Count)
        {
            Vector.Widen(new Vector<sbyte>(src[i..]), out var s0, out var s1);
            Vector.Widen(s0, out var i0, out var i1);
            Vector.Widen(s1, out var i2, out var i3);
            Vector.ConvertToSingle(i0).CopyTo(dst[i..]);
            Vector.ConvertToSingle(i1).CopyTo(dst[(i + n)..]);
            Vector.ConvertToSingle(i2).CopyTo(dst[(i + 2 * n)..]);
            Vector.ConvertToSingle(i3).CopyTo(dst[(i + 3 * n)..]);
        }
        for (; i < src.Length; i++) dst[i] = src[i];
    }
}
