using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
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

    /// <summary>Row pair order, the order the managed attention reads 16-bit cache rows in (a row's width a multiple of
    /// 8): per 16 features the 8 even-indexed ones, then the 8 odd-indexed ones; a last 8 as its 4 even then its 4 odd.
    /// A 32-bit word of the pool holds a pair of features, so a pair widens into an even and an odd f32 lane in place
    /// (<see cref="SimdMath.WidenF16(System.Runtime.Intrinsics.Vector256{ushort})"/>) with no shuffle; the query is put in
    /// the same order once, and the value sum comes back out of it once.</summary>
    public static void ToPairOrder(ReadOnlySpan<float> x, Span<float> dst)
    {
        for (int c = 0; c < x.Length; c += 16)
        {
            int half = Math.Min(16, x.Length - c) / 2;
            for (int k = 0; k < half; k++)
            {
                dst[c + k] = x[c + 2 * k];
                dst[c + half + k] = x[c + 2 * k + 1];
            }
        }
    }

    /// <summary>The inverse of <see cref="ToPairOrder"/>.</summary>
    public static void FromPairOrder(ReadOnlySpan<float> paired, Span<float> dst)
    {
        for (int c = 0; c < paired.Length; c += 16)
        {
            int half = Math.Min(16, paired.Length - c) / 2;
            for (int k = 0; k < half; k++)
            {
                dst[c + 2 * k] = paired[c + k];
                dst[c + 2 * k + 1] = paired[c + half + k];
            }
        }
    }

    /// <summary>Widens count rows of an f16 or bf16 pool (row i at words[i * rowWords], its first width features, width a
    /// multiple of 8) into dst (row i at dst[i * dstStride]) in row pair order: per 16 features one load, the in-place
    /// widening and two stores. f16 infinities and NaNs, which the in-place widening would turn into finite numbers, are
    /// detected on the way (an exponent of all ones); rows of a block that holds one are widened exactly instead.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void DecodePaired(ReadOnlySpan<int> words, int rowWords, int count, int width, Span<float> dst, int dstStride,
        int storage)
    {
        bool bf16 = storage == KvCodec.BF16;
        var halves = MemoryMarshal.Cast<int, ushort>(words);
        ref ushort hr = ref MemoryMarshal.GetReference(halves);
        ref float dr = ref MemoryMarshal.GetReference(dst);
        var exponent = Vector256.Create(0x7C007C00u);
        var carry = Vector256.Create(0x04000400u);
        var special = Vector256<uint>.Zero;
        for (int i = 0; i < count; i++)
        {
            nuint src = (nuint)(i * rowWords * 2), at = (nuint)(i * dstStride);
            int c = 0;
            for (; c + 16 <= width; c += 16)
            {
                var pairs = Vector256.LoadUnsafe(ref hr, src + (nuint)c);
                var (even, odd) = bf16 ? SimdMath.WidenBf16(pairs) : SimdMath.WidenF16(pairs);
                // An all-ones exponent plus one carries into the half's top bit.
                special |= (pairs.AsUInt32() & exponent) + carry;
                even.StoreUnsafe(ref dr, at + (nuint)c);
                odd.StoreUnsafe(ref dr, at + (nuint)c + 8);
            }
            if (c < width)
            {
                // The last 8 features: 4 pairs, widened in the low lanes of one Vector256.
                var pairs = Vector256.Create(Vector128.LoadUnsafe(ref hr, src + (nuint)c), Vector128<ushort>.Zero);
                var (even, odd) = bf16 ? SimdMath.WidenBf16(pairs) : SimdMath.WidenF16(pairs);
                special |= (pairs.AsUInt32() & exponent) + carry;
                even.GetLower().StoreUnsafe(ref dr, at + (nuint)c);
                odd.GetLower().StoreUnsafe(ref dr, at + (nuint)c + 4);
            }
        }
        if (bf16 || (special & Vector256.Create(0x80008000u)) == Vector256<uint>.Zero) return;
        var natural = new float[width];
        for (int i = 0; i < count; i++)
        {
            Decode(words.Slice(i * rowWords, rowWords), natural, storage);
            ToPairOrder(natural, dst.Slice(i * dstStride, width));
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
        if (Avx2.IsSupported)
        {
            // Eight codes a step: one sign-extending load (vpmovsxbd), one conversion, one store.
            ref sbyte s = ref MemoryMarshal.GetReference(src);
            ref float d = ref MemoryMarshal.GetReference(dst);
            int k = 0;
            for (; k + 8 <= src.Length; k += 8)
            {
                var codes = Vector128.CreateScalarUnsafe(Unsafe.ReadUnaligned<long>(ref Unsafe.As<sbyte, byte>(
                    ref Unsafe.Add(ref s, k)))).AsSByte();
                Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(codes)).StoreUnsafe(ref d, (nuint)k);
            }
            for (; k < src.Length; k++) dst[k] = src[k];
            return;
        }
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
