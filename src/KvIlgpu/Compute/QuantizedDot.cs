using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using KvIlgpu.Models;
using KvIlgpu.Models.Quantization;

namespace KvIlgpu.Compute;

/// <summary>Dot products of one ggml-quantised weight row with an activation row, without dequantising the row to
/// memory. With AVX2, every format's rows meet the 8-bit activation in integer arithmetic, as
/// llama.cpp's kernels do: 32 weight codes (made unsigned) times 32 activation codes with one vpmaddubsw, pairs summed
/// with vpmaddwd, and the block's two scales applied once per 32 values in f32. Offsets and minimums come off through
/// the activation's precomputed code sums. CPUs without AVX2 decode each block to f32 on the stack and take an f32 dot
/// with the unquantised activation.</summary>
internal static class QuantizedDot
{
    /// <summary>Whether the integer path serves this type on this CPU (the activation must then be quantised).</summary>
    public static bool UsesIntegerPath(WeightType type) => Avx2.IsSupported && Fma.IsSupported && type.IsQuantized();

    /// <summary>The dot product of row (its raw blocks) with the activation: the quantised one on the integer path,
    /// else the f32 one.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Dot(WeightType type, ReadOnlySpan<byte> row, ReadOnlySpan<float> x, QuantizedActivation? xq)
    {
        if (xq != null && UsesIntegerPath(type))
            return type switch
            {
                WeightType.Q8_0 => DotQ8_0(row, xq),
                WeightType.Q4_0 or WeightType.Q4_1 or WeightType.Q5_0 or WeightType.Q5_1 => DotBlock32(row, xq, type),
                WeightType.Q4_K => DotQ45K(row, xq, five: false),
                WeightType.Q5_K => DotQ45K(row, xq, five: true),
                _ => DotQ6K(row, xq),
            };
        return DotByBlocks(type, row, x);
    }

    /// <summary>Each block decoded to f32 on the stack, then an f32 SIMD dot.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float DotByBlocks(WeightType type, ReadOnlySpan<byte> row, ReadOnlySpan<float> x)
    {
        int elements = QuantFormats.BlockElements(type), bytes = QuantFormats.BlockBytes(type);
        Span<float> decoded = stackalloc float[256];
        float sum = 0;
        for (int b = 0; b < x.Length / elements; b++)
        {
            QuantFormats.DequantizeBlock(type, row.Slice(b * bytes, bytes), decoded);
            sum += SimdMath.Dot(x.Slice(b * elements, elements), decoded[..elements]);
        }
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Half(ref byte b, int offset) => (float)BitConverter.UInt16BitsToHalf(
        BinaryPrimitives.ReadUInt16LittleEndian(MemoryMarshal.CreateReadOnlySpan(ref Unsafe.Add(ref b, offset), 2)));

    /// <summary>Sum of the products of 32 unsigned weight codes with 32 activation codes, as 8 int32 partial sums
    /// (lanes 0-3 cover values 0-15, lanes 4-7 values 16-31).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> DotCodes(Vector256<byte> weights, Vector256<sbyte> activations) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(weights, activations), Vector256.Create((short)1));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> Codes(QuantizedActivation xq, int offset) =>
        Vector256.LoadUnsafe(ref MemoryMarshal.GetArrayDataReference(xq.Codes), (nuint)offset);

    /// <summary>Low and high nibbles of 32 bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<byte> Low, Vector256<byte> High) Nibbles(Vector256<byte> bytes)
    {
        var mask = Vector256.Create((byte)0x0F);
        return (bytes & mask, Vector256.ShiftRightLogical(bytes.AsUInt16(), 4).AsByte() & mask);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float DotQ8_0(ReadOnlySpan<byte> row, QuantizedActivation xq)
    {
        ref byte w = ref MemoryMarshal.GetReference(row);
        var acc = Vector256<float>.Zero;
        for (int b = 0; b < xq.Scales.Length; b++)
        {
            ref byte block = ref Unsafe.Add(ref w, 34 * b);
            var q = Vector256.LoadUnsafe(ref Unsafe.Add(ref block, 2)).AsSByte();
            // vpmaddubsw wants one unsigned side: |w| against x carrying w's sign.
            var products = DotCodes(Avx2.Abs(q), Avx2.Sign(Codes(xq, 32 * b), q));
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(products), Vector256.Create(Half(ref block, 0) * xq.Scales[b]), acc);
        }
        return Vector256.Sum(acc);
    }

    /// <summary>q4_0, q4_1, q5_0 and q5_1 (blocks of 32): unsigned codes (nibble, plus the fifth bit from qh), then
    /// x = d (q - centre) or d q + m, the centre and the minimum taken off through the activation's code sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float DotBlock32(ReadOnlySpan<byte> row, QuantizedActivation xq, WeightType type)
    {
        bool hasMin = type is WeightType.Q4_1 or WeightType.Q5_1, five = type is WeightType.Q5_0 or WeightType.Q5_1;
        int blockBytes = QuantFormats.BlockBytes(type), qhAt = hasMin ? 4 : 2, qsAt = qhAt + (five ? 4 : 0);
        int centre = hasMin ? 0 : five ? 16 : 8;
        ref byte w = ref MemoryMarshal.GetReference(row);
        var acc = Vector256<float>.Zero;
        var mask = Vector128.Create((byte)0x0F);
        // Fifth bits: each byte of the register takes the byte of qh that holds its bit, then tests that bit.
        var spread = Vector256.Create((byte)0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
        var bit = Vector256.Create((byte)1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8,
            16, 32, 64, 128);
        float centred = 0, minimums = 0;
        for (int b = 0; b < xq.Scales.Length; b++)
        {
            ref byte block = ref Unsafe.Add(ref w, blockBytes * b);
            var packed = Vector128.LoadUnsafe(ref Unsafe.Add(ref block, qsAt));
            // Values 0-15 are the low nibbles, 16-31 the high ones: exactly the two halves of the register.
            var codes = Vector256.Create(packed & mask, Vector128.ShiftRightLogical(packed.AsUInt16(), 4).AsByte() & mask);
            if (five)
            {
                var qh = Vector256.Create(Unsafe.ReadUnaligned<uint>(ref Unsafe.Add(ref block, qhAt))).AsByte();
                // vpshufb picks within each 128-bit half; qh is repeated in every 4 bytes, so indices 0-3 reach it from both.
                var spreadBits = Avx2.Shuffle(qh, spread) & bit;
                codes |= Vector256.Equals(spreadBits, bit) & Vector256.Create((byte)16);
            }
            float d = Half(ref block, 0), sum = xq.ScaledSums16[2 * b] + xq.ScaledSums16[2 * b + 1];
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(DotCodes(codes, Codes(xq, 32 * b))), Vector256.Create(d * xq.Scales[b]),
                acc);
            centred += d * sum;
            if (hasMin) minimums += Half(ref block, 2) * sum;
        }
        return Vector256.Sum(acc) - centre * centred + minimums;
    }

    /// <summary>q4_K and q5_K: per 64 values, 32 bytes of nibbles (low: values 0-31, high: 32-63) and, for q5_K, the
    /// fifth bits from qh; x = d sc q - dmin m per sub-block of 32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float DotQ45K(ReadOnlySpan<byte> row, QuantizedActivation xq, bool five)
    {
        int blockBytes = five ? 176 : 144, superBlocks = xq.Codes.Length / 256;
        Span<byte> scales = stackalloc byte[12];
        var acc = Vector256<float>.Zero;
        float minimums = 0;
        for (int s = 0; s < superBlocks; s++)
        {
            var block = row.Slice(blockBytes * s, blockBytes);
            ref byte b0 = ref MemoryMarshal.GetReference(block);
            float d = Half(ref b0, 0), dmin = Half(ref b0, 2);
            block.Slice(4, 12).CopyTo(scales);
            ref byte qs = ref Unsafe.Add(ref b0, five ? 48 : 16);
            var qh = five ? Vector256.LoadUnsafe(ref Unsafe.Add(ref b0, 16)) : default;
            for (int c = 0; c < 4; c++)
            {
                var (low, high) = Nibbles(Vector256.LoadUnsafe(ref qs, (nuint)(32 * c)));
                if (five)
                {
                    var lowBit = Vector256.Create((byte)(1 << (2 * c))); var highBit = Vector256.Create((byte)(2 << (2 * c)));
                    var sixteen = Vector256.Create((byte)16);
                    low |= Vector256.Equals(qh & lowBit, lowBit) & sixteen;
                    high |= Vector256.Equals(qh & highBit, highBit) & sixteen;
                }
                int j = 8 * s + 2 * c; // activation block of the low half
                var (sc0, m0) = QuantFormats.ScaleMin(scales, 2 * c);
                var (sc1, m1) = QuantFormats.ScaleMin(scales, 2 * c + 1);
                acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(DotCodes(low, Codes(xq, 32 * j))),
                    Vector256.Create(d * sc0 * xq.Scales[j]), acc);
                acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(DotCodes(high, Codes(xq, 32 * j + 32))),
                    Vector256.Create(d * sc1 * xq.Scales[j + 1]), acc);
                minimums += dmin * (m0 * (xq.ScaledSums16[2 * j] + xq.ScaledSums16[2 * j + 1])
                    + m1 * (xq.ScaledSums16[2 * j + 2] + xq.ScaledSums16[2 * j + 3]));
            }
        }
        return Vector256.Sum(acc) - minimums;
    }

    /// <summary>q6_K: per half of 128 values, ql (64 bytes) and qh (32 bytes); value 32 i + l is a nibble of
    /// ql[l + 32 (i mod 2)] (low for i &lt; 2) with bits 2i, 2i+1 of qh[l] on top; x = d sc (q - 32), one int8 scale per 16.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float DotQ6K(ReadOnlySpan<byte> row, QuantizedActivation xq)
    {
        int superBlocks = xq.Codes.Length / 256;
        var acc = Vector256<float>.Zero;
        float offsets = 0;
        var three = Vector256.Create((byte)3);
        for (int s = 0; s < superBlocks; s++)
        {
            ref byte b0 = ref Unsafe.Add(ref MemoryMarshal.GetReference(row), 210 * s);
            float d = Half(ref b0, 208);
            ref sbyte sc = ref Unsafe.As<byte, sbyte>(ref Unsafe.Add(ref b0, 192));
            for (int n = 0; n < 2; n++)
            {
                var (low0, high0) = Nibbles(Vector256.LoadUnsafe(ref b0, (nuint)(64 * n)));
                var (low1, high1) = Nibbles(Vector256.LoadUnsafe(ref b0, (nuint)(64 * n + 32)));
                var qh = Vector256.LoadUnsafe(ref b0, (nuint)(128 + 32 * n)).AsUInt16();
                for (int i = 0; i < 4; i++)
                {
                    var top = ShiftLeftBytes(Vector256.ShiftRightLogical(qh, 2 * i).AsByte() & three, 4);
                    var codes = (i & 1) == 0 ? (i < 2 ? low0 : high0) : (i < 2 ? low1 : high1);
                    int j = 8 * s + 4 * n + i, g = 8 * n + 2 * i; // activation block, scale of its first 16 values
                    float dx = d * xq.Scales[j];
                    var scale = Vector256.Create(Vector128.Create(dx * Unsafe.Add(ref sc, g)),
                        Vector128.Create(dx * Unsafe.Add(ref sc, g + 1)));
                    acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(DotCodes(codes | top, Codes(xq, 32 * j))), scale, acc);
                }
            }
            for (int g = 0; g < 16; g++) offsets += d * Unsafe.Add(ref sc, g) * xq.ScaledSums16[16 * s + g];
        }
        return Vector256.Sum(acc) - 32 * offsets;
    }

    /// <summary>Vector256.ShiftLeft on bytes (shifts 16-bit lanes: the codes shifted here are below 4, so nothing crosses
    /// into the next byte).</summary>
    private static Vector256<byte> ShiftLeftBytes(Vector256<byte> v, int bits) => Vector256.ShiftLeft(v.AsUInt16(), bits).AsByte();
}
