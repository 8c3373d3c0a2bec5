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
/// with vpmaddwd, and the scales applied in f32 once per block of 32 (for the k-quants, whose sub-block scales are
/// integers applied by vpmaddwd, once per super-block of 256). Offsets and minimums come off through
/// the activation's precomputed code sums. CPUs without AVX2 decode each block to f32 on the stack and take an f32 dot
/// with the unquantised activation.</summary>
internal static class QuantizedDot
{
    /// <summary>Whether the integer path serves this type on this CPU (the activation must then be quantised).</summary>
    public static bool UsesIntegerPath(WeightType type) => Avx2.IsSupported && Fma.IsSupported && type.IsQuantized();

    /// <summary>y[i] = row (first + i) of the blocks against the activation, for i below y.Length: one dispatch for
    /// many rows, each row's loop inlined into the loop over rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void DotRows(WeightType type, ReadOnlySpan<byte> blocks, int rowBytes, int first, ReadOnlySpan<float> x,
        QuantizedActivation? xq, Span<float> y)
    {
        if (xq == null || !UsesIntegerPath(type))
        {
            for (int i = 0; i < y.Length; i++) y[i] = DotByBlocks(type, blocks.Slice((first + i) * rowBytes, rowBytes), x);
            return;
        }
        switch (type)
        {
            case WeightType.Q8_0:
                for (int i = 0; i < y.Length; i++) y[i] = DotQ8_0(blocks.Slice((first + i) * rowBytes, rowBytes), xq);
                break;
            case WeightType.Q4_K:
                for (int i = 0; i < y.Length; i++) y[i] = DotQ45K(blocks.Slice((first + i) * rowBytes, rowBytes), xq, five: false);
                break;
            case WeightType.Q5_K:
                for (int i = 0; i < y.Length; i++) y[i] = DotQ45K(blocks.Slice((first + i) * rowBytes, rowBytes), xq, five: true);
                break;
            case WeightType.Q6_K:
                for (int i = 0; i < y.Length; i++) y[i] = DotQ6K(blocks.Slice((first + i) * rowBytes, rowBytes), xq);
                break;
            // Each with its type as a constant, so the inlined loop has no per-block branches on it.
            case WeightType.Q4_0:
                for (int i = 0; i < y.Length; i++) y[i] = DotBlock32(blocks.Slice((first + i) * rowBytes, rowBytes), xq, WeightType.Q4_0);
                break;
            case WeightType.Q4_1:
                for (int i = 0; i < y.Length; i++) y[i] = DotBlock32(blocks.Slice((first + i) * rowBytes, rowBytes), xq, WeightType.Q4_1);
                break;
            case WeightType.Q5_0:
                for (int i = 0; i < y.Length; i++) y[i] = DotBlock32(blocks.Slice((first + i) * rowBytes, rowBytes), xq, WeightType.Q5_0);
                break;
            default:
                for (int i = 0; i < y.Length; i++) y[i] = DotBlock32(blocks.Slice((first + i) * rowBytes, rowBytes), xq, WeightType.Q5_1);
                break;
        }
    }

    /// <summary>Whether <see cref="DotRows2"/> has a two-activation-row kernel for the type (else callers take DotRows per
    /// activation row).</summary>
    public static bool HasTwoRowKernel(WeightType type) => UsesIntegerPath(type);

    /// <summary>As <see cref="DotRows"/> for two activation rows at once, y0 for xq0 and y1 for xq1, each bitwise what
    /// DotRows gives it (types with <see cref="HasTwoRowKernel"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void DotRows2(WeightType type, ReadOnlySpan<byte> blocks, int rowBytes, int first, QuantizedActivation xq0,
        QuantizedActivation xq1, Span<float> y0, Span<float> y1)
    {
        if (type == WeightType.Q6_K)
        {
            for (int i = 0; i < y0.Length; i++) (y0[i], y1[i]) = DotQ6K2(blocks.Slice((first + i) * rowBytes, rowBytes), xq0, xq1);
            return;
        }
        if (type == WeightType.Q8_0)
        {
            for (int i = 0; i < y0.Length; i++) (y0[i], y1[i]) = DotQ8_02(blocks.Slice((first + i) * rowBytes, rowBytes), xq0, xq1);
            return;
        }
        // Each 32-value format with its type as a constant, as in DotRows.
        switch (type)
        {
            case WeightType.Q4_0:
                for (int i = 0; i < y0.Length; i++)
                    (y0[i], y1[i]) = DotBlock32x2(blocks.Slice((first + i) * rowBytes, rowBytes), xq0, xq1, WeightType.Q4_0);
                return;
            case WeightType.Q4_1:
                for (int i = 0; i < y0.Length; i++)
                    (y0[i], y1[i]) = DotBlock32x2(blocks.Slice((first + i) * rowBytes, rowBytes), xq0, xq1, WeightType.Q4_1);
                return;
            case WeightType.Q5_0:
                for (int i = 0; i < y0.Length; i++)
                    (y0[i], y1[i]) = DotBlock32x2(blocks.Slice((first + i) * rowBytes, rowBytes), xq0, xq1, WeightType.Q5_0);
                return;
            case WeightType.Q5_1:
                for (int i = 0; i < y0.Length; i++)
                    (y0[i], y1[i]) = DotBlock32x2(blocks.Slice((first + i) * rowBytes, rowBytes), xq0, xq1, WeightType.Q5_1);
                return;
        }
        bool five = type == WeightType.Q5_K;
        for (int i = 0; i < y0.Length; i++)
            (y0[i], y1[i]) = DotQ45K2(blocks.Slice((first + i) * rowBytes, rowBytes), xq0, xq1, five);
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

    /// <summary>Every f16 bit pattern as f32 (256 KB): one load instead of a software conversion per block scale, as
    /// ggml does without F16C.</summary>
    private static readonly float[] HalfTable = Enumerable.Range(0, 65536).Select(h => (float)BitConverter.UInt16BitsToHalf((ushort)h))
        .ToArray();

    /// <summary>The f16 at b + offset as f32, from the table (fetched once per row by the caller: a static field read inside
    /// the loop of a method compiled before the class's initialiser ran costs a helper call each time).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Half(ref float table, ref byte b, int offset) =>
        Unsafe.Add(ref table, Unsafe.ReadUnaligned<ushort>(ref Unsafe.Add(ref b, offset)));

    /// <summary>The block size of the activation the integer path wants for a weight type: q8_K's 256 for the k-quants
    /// (their sub-block scales are integers, so a super-block sums in int32 and converts once), 32 otherwise.</summary>
    public static int ActivationBlock(WeightType type) => type is WeightType.Q4_K or WeightType.Q5_K or WeightType.Q6_K ? 256 : 32;

    /// <summary>Sum of the products of 32 unsigned weight codes with 32 activation codes, as 8 int32 partial sums
    /// (lanes 0-3 cover values 0-15, lanes 4-7 values 16-31).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> DotCodes(Vector256<byte> weights, Vector256<sbyte> activations) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(weights, activations), Vector256.Create((short)1));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> Codes(ref sbyte codes, int offset) => Vector256.LoadUnsafe(ref codes, (nuint)offset);

    /// <summary>Low and high nibbles of 32 bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<byte> Low, Vector256<byte> High) Nibbles(Vector256<byte> bytes)
    {
        var mask = Vector256.Create((byte)0x0F);
        return (bytes & mask, Vector256.ShiftRightLogical(bytes.AsUInt16(), 4).AsByte() & mask);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static float DotQ8_0(ReadOnlySpan<byte> row, QuantizedActivation xq)
    {
        ref sbyte codes = ref MemoryMarshal.GetArrayDataReference(xq.Codes);
        ref float table = ref MemoryMarshal.GetArrayDataReference(HalfTable);
        ref byte w = ref MemoryMarshal.GetReference(row);
        var acc = Vector256<float>.Zero;
        for (int b = 0; b < xq.Scales.Length; b++)
        {
            ref byte block = ref Unsafe.Add(ref w, 34 * b);
            var q = Vector256.LoadUnsafe(ref Unsafe.Add(ref block, 2)).AsSByte();
            // vpmaddubsw wants one unsigned side: |w| against x carrying w's sign.
            var products = DotCodes(Avx2.Abs(q), Avx2.Sign(Codes(ref codes, 32 * b), q));
            float scale = Half(ref table, ref block, 0) * xq.Scales[b];
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(products), Vector256.Create(scale), acc);
        }
        return Vector256.Sum(acc);
    }

    /// <summary><see cref="DotQ8_0"/> against two activation rows: each block's codes loaded, and their magnitudes taken,
    /// once for both; each result bitwise DotQ8_0's.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static (float, float) DotQ8_02(ReadOnlySpan<byte> row, QuantizedActivation xq0, QuantizedActivation xq1)
    {
        ref sbyte codes0 = ref MemoryMarshal.GetArrayDataReference(xq0.Codes);
        ref sbyte codes1 = ref MemoryMarshal.GetArrayDataReference(xq1.Codes);
        ref float table = ref MemoryMarshal.GetArrayDataReference(HalfTable);
        ref byte w = ref MemoryMarshal.GetReference(row);
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero;
        for (int b = 0; b < xq0.Scales.Length; b++)
        {
            ref byte block = ref Unsafe.Add(ref w, 34 * b);
            var q = Vector256.LoadUnsafe(ref Unsafe.Add(ref block, 2)).AsSByte();
            var magnitude = Avx2.Abs(q);
            float d = Half(ref table, ref block, 0);
            var products0 = DotCodes(magnitude, Avx2.Sign(Codes(ref codes0, 32 * b), q));
            var products1 = DotCodes(magnitude, Avx2.Sign(Codes(ref codes1, 32 * b), q));
            acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(products0), Vector256.Create(d * xq0.Scales[b]), acc0);
            acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(products1), Vector256.Create(d * xq1.Scales[b]), acc1);
        }
        return (Vector256.Sum(acc0), Vector256.Sum(acc1));
    }

    /// <summary>q4_0, q4_1, q5_0 and q5_1 (blocks of 32): unsigned codes (nibble, plus the fifth bit from qh), then
    /// x = d (q - centre) or d q + m, the centre and the minimum taken off through the activation's code sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static float DotBlock32(ReadOnlySpan<byte> row, QuantizedActivation xq, WeightType type)
    {
        ref sbyte codes = ref MemoryMarshal.GetArrayDataReference(xq.Codes);
        ref float table = ref MemoryMarshal.GetArrayDataReference(HalfTable);
        bool hasMin = type is WeightType.Q4_1 or WeightType.Q5_1, five = type is WeightType.Q5_0 or WeightType.Q5_1;
        int blockBytes = QuantFormats.BlockBytes(type), qhAt = hasMin ? 4 : 2, qsAt = qhAt + (five ? 4 : 0);
        int centre = hasMin ? 0 : five ? 16 : 8;
        ref byte w = ref MemoryMarshal.GetReference(row);
        var acc = Vector256<float>.Zero;
        var (mask, spread, bit) = Block32Constants();
        float centred = 0, minimums = 0;
        for (int b = 0; b < xq.Scales.Length; b++)
        {
            ref byte block = ref Unsafe.Add(ref w, blockBytes * b);
            var q = Block32Codes(ref block, qsAt, qhAt, five, mask, spread, bit);
            float d = Half(ref table, ref block, 0), sum = xq.ScaledSums32[b];
            var products = DotCodes(q, Codes(ref codes, 32 * b));
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(products), Vector256.Create(d * xq.Scales[b]), acc);
            centred += d * sum;
            if (hasMin) minimums += Half(ref table, ref block, 2) * sum;
        }
        return Vector256.Sum(acc) - centre * centred + minimums;
    }

    /// <summary>The nibble mask and, for the fifth bits, the byte of qh each code's bit is in and the bit itself (read once
    /// per row, before the loop over blocks).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector128<byte> Mask, Vector256<byte> Spread, Vector256<byte> Bit) Block32Constants() => (
        Vector128.Create((byte)0x0F),
        Vector256.Create((byte)0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3),
        Vector256.Create((byte)1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32,
            64, 128));

    /// <summary>The 32 unsigned codes of a q4_0, q4_1, q5_0 or q5_1 block: values 0-15 are the low nibbles, 16-31 the high
    /// ones (exactly the two halves of the register), and for the q5 formats each code's fifth bit from qh adds 16: each
    /// byte takes the byte of qh that holds its bit (vpshufb picks within each 128-bit half; qh is repeated in every 4
    /// bytes, so indices 0-3 reach it from both), then tests that bit.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Block32Codes(ref byte block, int qsAt, int qhAt, bool five, Vector128<byte> mask,
        Vector256<byte> spread, Vector256<byte> bit)
    {
        var packed = Vector128.LoadUnsafe(ref Unsafe.Add(ref block, qsAt));
        var q = Vector256.Create(packed & mask, Vector128.ShiftRightLogical(packed.AsUInt16(), 4).AsByte() & mask);
        if (five)
        {
            var qh = Vector256.Create(Unsafe.ReadUnaligned<uint>(ref Unsafe.Add(ref block, qhAt))).AsByte();
            q |= Vector256.Equals(Avx2.Shuffle(qh, spread) & bit, bit) & Vector256.Create((byte)16);
        }
        return q;
    }

    /// <summary><see cref="DotBlock32"/> against two activation rows: each block's codes assembled once for both; each
    /// result bitwise DotBlock32's.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static (float, float) DotBlock32x2(ReadOnlySpan<byte> row, QuantizedActivation xq0, QuantizedActivation xq1,
        WeightType type)
    {
        ref sbyte codes0 = ref MemoryMarshal.GetArrayDataReference(xq0.Codes);
        ref sbyte codes1 = ref MemoryMarshal.GetArrayDataReference(xq1.Codes);
        ref float table = ref MemoryMarshal.GetArrayDataReference(HalfTable);
        bool hasMin = type is WeightType.Q4_1 or WeightType.Q5_1, five = type is WeightType.Q5_0 or WeightType.Q5_1;
        int blockBytes = QuantFormats.BlockBytes(type), qhAt = hasMin ? 4 : 2, qsAt = qhAt + (five ? 4 : 0);
        int centre = hasMin ? 0 : five ? 16 : 8;
        ref byte w = ref MemoryMarshal.GetReference(row);
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero;
        var (mask, spread, bit) = Block32Constants();
        float centred0 = 0, minimums0 = 0, centred1 = 0, minimums1 = 0;
        for (int b = 0; b < xq0.Scales.Length; b++)
        {
            ref byte block = ref Unsafe.Add(ref w, blockBytes * b);
            var q = Block32Codes(ref block, qsAt, qhAt, five, mask, spread, bit);
            float d = Half(ref table, ref block, 0), m = hasMin ? Half(ref table, ref block, 2) : 0;
            float sum0 = xq0.ScaledSums32[b], sum1 = xq1.ScaledSums32[b];
            acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(DotCodes(q, Codes(ref codes0, 32 * b))),
                Vector256.Create(d * xq0.Scales[b]), acc0);
            acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(DotCodes(q, Codes(ref codes1, 32 * b))),
                Vector256.Create(d * xq1.Scales[b]), acc1);
            centred0 += d * sum0;
            centred1 += d * sum1;
            if (hasMin) { minimums0 += m * sum0; minimums1 += m * sum1; }
        }
        return (Vector256.Sum(acc0) - centre * centred0 + minimums0, Vector256.Sum(acc1) - centre * centred1 + minimums1);
    }

    /// <summary>q4_K and q5_K against a q8_K activation: per 64 values, 32 bytes of nibbles (low: values 0-31, high: 32-63)
    /// and, for q5_K, the fifth bits from qh; x = d sc q - dmin m per sub-block of 32. The sub-block scales multiply the
    /// 16-bit pair sums (vpmaddwd), so a super-block accumulates in int32 and is converted to f32 once.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static float DotQ45K(ReadOnlySpan<byte> row, QuantizedActivation xq, bool five)
    {
        ref sbyte codes = ref MemoryMarshal.GetArrayDataReference(xq.Codes);
        ref float table = ref MemoryMarshal.GetArrayDataReference(HalfTable);
        int blockBytes = five ? 176 : 144;
        var acc = Vector256<float>.Zero;
        float minimums = 0;
        ref short pairs = ref MemoryMarshal.GetArrayDataReference(xq.Sums32);
        for (int s = 0; s < xq.Scales.Length; s++)
        {
            ref byte b0 = ref Unsafe.Add(ref MemoryMarshal.GetReference(row), blockBytes * s);
            float dx = xq.Scales[s], d = Half(ref table, ref b0, 0) * dx, dmin = Half(ref table, ref b0, 2) * dx;
            var (scales, mins) = UnpackScales(ref Unsafe.Add(ref b0, 4));
            ref byte qs = ref Unsafe.Add(ref b0, five ? 48 : 16);
            var qh = five ? Vector256.LoadUnsafe(ref Unsafe.Add(ref b0, 16)) : default;
            var sum = Vector256<int>.Zero;
            for (int c = 0; c < 4; c++)
            {
                var (low, high) = KQuantCodes(ref qs, qh, c, five);
                sum += ScaledSubBlocks(low, high, scales, c, ref codes, 256 * s + 64 * c);
            }
            // The minimums against the activation's sums of 32: eight products in one vpmaddwd.
            var minSums = Vector128.LoadUnsafe(ref Unsafe.Add(ref pairs, 8 * s));
            int minSum = Vector128.Sum(Sse2.MultiplyAddAdjacent(Sse41.ConvertToVector128Int16(Vector128.CreateScalar(mins).AsByte()),
                minSums));
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sum), Vector256.Create(d), acc);
            minimums += dmin * minSum;
        }
        return Vector256.Sum(acc) - minimums;
    }

    /// <summary><see cref="DotQ45K"/> against two activation rows at once (prefill, batched decode): each super-block's
    /// scales, codes and fifth bits are unpacked once for both. Each row's arithmetic is DotQ45K's, in its order, so each
    /// result is bitwise what DotQ45K gives (batching changes no number).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static (float, float) DotQ45K2(ReadOnlySpan<byte> row, QuantizedActivation xq0, QuantizedActivation xq1, bool five)
    {
        ref sbyte codes0 = ref MemoryMarshal.GetArrayDataReference(xq0.Codes);
        ref sbyte codes1 = ref MemoryMarshal.GetArrayDataReference(xq1.Codes);
        ref float table = ref MemoryMarshal.GetArrayDataReference(HalfTable);
        int blockBytes = five ? 176 : 144;
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero;
        float minimums0 = 0, minimums1 = 0;
        ref short pairs0 = ref MemoryMarshal.GetArrayDataReference(xq0.Sums32);
        ref short pairs1 = ref MemoryMarshal.GetArrayDataReference(xq1.Sums32);
        for (int s = 0; s < xq0.Scales.Length; s++)
        {
            ref byte b0 = ref Unsafe.Add(ref MemoryMarshal.GetReference(row), blockBytes * s);
            float wd = Half(ref table, ref b0, 0), wmin = Half(ref table, ref b0, 2);
            float dx0 = xq0.Scales[s], dx1 = xq1.Scales[s];
            float d0 = wd * dx0, dmin0 = wmin * dx0, d1 = wd * dx1, dmin1 = wmin * dx1;
            var (scales, mins) = UnpackScales(ref Unsafe.Add(ref b0, 4));
            ref byte qs = ref Unsafe.Add(ref b0, five ? 48 : 16);
            var qh = five ? Vector256.LoadUnsafe(ref Unsafe.Add(ref b0, 16)) : default;
            Vector256<int> sum0 = Vector256<int>.Zero, sum1 = Vector256<int>.Zero;
            for (int c = 0; c < 4; c++)
            {
                var (low, high) = KQuantCodes(ref qs, qh, c, five);
                sum0 += ScaledSubBlocks(low, high, scales, c, ref codes0, 256 * s + 64 * c);
                sum1 += ScaledSubBlocks(low, high, scales, c, ref codes1, 256 * s + 64 * c);
            }
            var mins16 = Sse41.ConvertToVector128Int16(Vector128.CreateScalar(mins).AsByte());
            int minSum0 = Vector128.Sum(Sse2.MultiplyAddAdjacent(mins16, Vector128.LoadUnsafe(ref Unsafe.Add(ref pairs0, 8 * s))));
            int minSum1 = Vector128.Sum(Sse2.MultiplyAddAdjacent(mins16, Vector128.LoadUnsafe(ref Unsafe.Add(ref pairs1, 8 * s))));
            acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sum0), Vector256.Create(d0), acc0);
            acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sum1), Vector256.Create(d1), acc1);
            minimums0 += dmin0 * minSum0;
            minimums1 += dmin1 * minSum1;
        }
        return (Vector256.Sum(acc0) - minimums0, Vector256.Sum(acc1) - minimums1);
    }

    /// <summary>The codes of the c-th 64 values of a q4_K or q5_K super-block: the low nibbles of 32 bytes are sub-block
    /// 2c, the high ones sub-block 2c + 1, and for q5_K bits 2c and 2c + 1 of qh add 16.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<byte> Low, Vector256<byte> High) KQuantCodes(ref byte qs, Vector256<byte> qh, int c, bool five)
    {
        var (low, high) = Nibbles(Vector256.LoadUnsafe(ref qs, (nuint)(32 * c)));
        if (five)
        {
            var lowBit = Vector256.Create((byte)(1 << (2 * c))); var highBit = Vector256.Create((byte)(2 << (2 * c)));
            var sixteen = Vector256.Create((byte)16);
            low |= Vector256.Equals(qh & lowBit, lowBit) & sixteen;
            high |= Vector256.Equals(qh & highBit, highBit) & sixteen;
        }
        return (low, high);
    }

    /// <summary>Sub-blocks 2c and 2c + 1 against the activation codes at at: code products summed in pairs (vpmaddubsw),
    /// then times each sub-block's integer scale (vpmaddwd), as 8 int32 partial sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> ScaledSubBlocks(Vector256<byte> low, Vector256<byte> high, ulong scales, int c, ref sbyte codes,
        int at) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(low, Codes(ref codes, at)), Vector256.Create((short)(byte)(scales >> (16 * c))))
        + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(high, Codes(ref codes, at + 32)),
            Vector256.Create((short)(byte)(scales >> (16 * c + 8))));

    /// <summary>q4_K's and q5_K's 12 scale bytes q as eight 6-bit scales and eight 6-bit minimums, one a byte, in two
    /// 64-bit words (byte j: sub-block j), by <see cref="QuantFormats.ScaleMin"/>'s rule done four bytes at a time:
    /// scales 0-3 are q[0..3] &amp; 63 and 4-7 are (q[8..11] &amp; 15) | (q[0..3] &gt;&gt; 6) &lt;&lt; 4; minimums 0-3 are
    /// q[4..7] &amp; 63 and 4-7 are (q[8..11] &gt;&gt; 4) | (q[4..7] &gt;&gt; 6) &lt;&lt; 4.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (ulong Scales, ulong Mins) UnpackScales(ref byte q)
    {
        uint a = Unsafe.ReadUnaligned<uint>(ref q), b = Unsafe.ReadUnaligned<uint>(ref Unsafe.Add(ref q, 4)),
            c = Unsafe.ReadUnaligned<uint>(ref Unsafe.Add(ref q, 8));
        const uint Low6 = 0x3F3F3F3F, Low4 = 0x0F0F0F0F, Low2 = 0x03030303;
        uint scalesHigh = (c & Low4) | ((a >> 6) & Low2) << 4, minsHigh = ((c >> 4) & Low4) | ((b >> 6) & Low2) << 4;
        return ((a & Low6) | (ulong)scalesHigh << 32, (b & Low6) | (ulong)minsHigh << 32);
    }

    /// <summary>q6_K against a q8_K activation: per half of 128 values, ql (64 bytes) and qh (32 bytes); value 32 i + l is a
    /// nibble of ql[l + 32 (i mod 2)] (low for i &lt; 2) with bits 2i, 2i+1 of qh[l] on top; x = d sc (q - 32), one int8
    /// scale per 16 values, applied to the 16-bit pair sums so the super-block sums in int32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static float DotQ6K(ReadOnlySpan<byte> row, QuantizedActivation xq)
    {
        ref sbyte codes = ref MemoryMarshal.GetArrayDataReference(xq.Codes);
        ref float table = ref MemoryMarshal.GetArrayDataReference(HalfTable);
        var acc = Vector256<float>.Zero;
        float offsets = 0;
        var three = Vector256.Create((byte)3);
        ref int sums = ref MemoryMarshal.GetArrayDataReference(xq.Sums16);
        for (int s = 0; s < xq.Scales.Length; s++)
        {
            ref byte b0 = ref Unsafe.Add(ref MemoryMarshal.GetReference(row), 210 * s);
            float d = Half(ref table, ref b0, 208) * xq.Scales[s];
            ref sbyte sc = ref Unsafe.As<byte, sbyte>(ref Unsafe.Add(ref b0, 192));
            var sum = Vector256<int>.Zero;
            for (int n = 0; n < 2; n++)
            {
                var (low0, high0) = Nibbles(Vector256.LoadUnsafe(ref b0, (nuint)(64 * n)));
                var (low1, high1) = Nibbles(Vector256.LoadUnsafe(ref b0, (nuint)(64 * n + 32)));
                var qh = Vector256.LoadUnsafe(ref b0, (nuint)(128 + 32 * n)).AsUInt16();
                // The four quarters written out: their nibble and qh shift are constants.
                int at = 256 * s + 128 * n, g = 8 * n;
                sum += Quarter(low0 | ShiftLeftBytes(qh.AsByte() & three, 4), ref Unsafe.Add(ref codes, at), ref sc, g);
                sum += Quarter(low1 | ShiftLeftBytes(Vector256.ShiftRightLogical(qh, 2).AsByte() & three, 4),
                    ref Unsafe.Add(ref codes, at + 32), ref sc, g + 2);
                sum += Quarter(high0 | ShiftLeftBytes(Vector256.ShiftRightLogical(qh, 4).AsByte() & three, 4),
                    ref Unsafe.Add(ref codes, at + 64), ref sc, g + 4);
                sum += Quarter(high1 | ShiftLeftBytes(Vector256.ShiftRightLogical(qh, 6).AsByte() & three, 4),
                    ref Unsafe.Add(ref codes, at + 96), ref sc, g + 6);
            }
            // The offset of 32 against the activation's sums of 16: sixteen products in two vpmulld.
            var scales16 = Vector128.LoadUnsafe(ref sc);
            int offset = Vector256.Sum(Avx2.ConvertToVector256Int32(scales16) * Vector256.LoadUnsafe(ref sums, (nuint)(16 * s))
                + Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(scales16, 8)) * Vector256.LoadUnsafe(ref sums,
                    (nuint)(16 * s + 8)));
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sum), Vector256.Create(d), acc);
            offsets += d * offset;
        }
        return Vector256.Sum(acc) - 32 * offsets;
    }

    /// <summary><see cref="DotQ6K"/> against two activation rows: each half super-block's codes assembled once for both;
    /// each result bitwise DotQ6K's.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static (float, float) DotQ6K2(ReadOnlySpan<byte> row, QuantizedActivation xq0, QuantizedActivation xq1)
    {
        ref sbyte codes0 = ref MemoryMarshal.GetArrayDataReference(xq0.Codes);
        ref sbyte codes1 = ref MemoryMarshal.GetArrayDataReference(xq1.Codes);
        ref float table = ref MemoryMarshal.GetArrayDataReference(HalfTable);
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero;
        float offsets0 = 0, offsets1 = 0;
        var three = Vector256.Create((byte)3);
        ref int sums0 = ref MemoryMarshal.GetArrayDataReference(xq0.Sums16);
        ref int sums1 = ref MemoryMarshal.GetArrayDataReference(xq1.Sums16);
        for (int s = 0; s < xq0.Scales.Length; s++)
        {
            ref byte b0 = ref Unsafe.Add(ref MemoryMarshal.GetReference(row), 210 * s);
            float wd = Half(ref table, ref b0, 208), d0 = wd * xq0.Scales[s], d1 = wd * xq1.Scales[s];
            ref sbyte sc = ref Unsafe.As<byte, sbyte>(ref Unsafe.Add(ref b0, 192));
            Vector256<int> sum0 = Vector256<int>.Zero, sum1 = Vector256<int>.Zero;
            for (int n = 0; n < 2; n++)
            {
                var (low0, high0) = Nibbles(Vector256.LoadUnsafe(ref b0, (nuint)(64 * n)));
                var (low1, high1) = Nibbles(Vector256.LoadUnsafe(ref b0, (nuint)(64 * n + 32)));
                var qh = Vector256.LoadUnsafe(ref b0, (nuint)(128 + 32 * n)).AsUInt16();
                int at = 256 * s + 128 * n, g = 8 * n;
                var q0 = low0 | ShiftLeftBytes(qh.AsByte() & three, 4);
                var q1 = low1 | ShiftLeftBytes(Vector256.ShiftRightLogical(qh, 2).AsByte() & three, 4);
                var q2 = high0 | ShiftLeftBytes(Vector256.ShiftRightLogical(qh, 4).AsByte() & three, 4);
                var q3 = high1 | ShiftLeftBytes(Vector256.ShiftRightLogical(qh, 6).AsByte() & three, 4);
                sum0 += Quarter(q0, ref Unsafe.Add(ref codes0, at), ref sc, g);
                sum0 += Quarter(q1, ref Unsafe.Add(ref codes0, at + 32), ref sc, g + 2);
                sum0 += Quarter(q2, ref Unsafe.Add(ref codes0, at + 64), ref sc, g + 4);
                sum0 += Quarter(q3, ref Unsafe.Add(ref codes0, at + 96), ref sc, g + 6);
                sum1 += Quarter(q0, ref Unsafe.Add(ref codes1, at), ref sc, g);
                sum1 += Quarter(q1, ref Unsafe.Add(ref codes1, at + 32), ref sc, g + 2);
                sum1 += Quarter(q2, ref Unsafe.Add(ref codes1, at + 64), ref sc, g + 4);
                sum1 += Quarter(q3, ref Unsafe.Add(ref codes1, at + 96), ref sc, g + 6);
            }
            var scales16 = Vector128.LoadUnsafe(ref sc);
            var scalesLow = Avx2.ConvertToVector256Int32(scales16);
            var scalesHigh = Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(scales16, 8));
            int offset0 = Vector256.Sum(scalesLow * Vector256.LoadUnsafe(ref sums0, (nuint)(16 * s))
                + scalesHigh * Vector256.LoadUnsafe(ref sums0, (nuint)(16 * s + 8)));
            int offset1 = Vector256.Sum(scalesLow * Vector256.LoadUnsafe(ref sums1, (nuint)(16 * s))
                + scalesHigh * Vector256.LoadUnsafe(ref sums1, (nuint)(16 * s + 8)));
            acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sum0), Vector256.Create(d0), acc0);
            acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sum1), Vector256.Create(d1), acc1);
            offsets0 += d0 * offset0;
            offsets1 += d1 * offset1;
        }
        return (Vector256.Sum(acc0) - 32 * offsets0, Vector256.Sum(acc1) - 32 * offsets1);
    }

    /// <summary>32 q6_K codes (0-63) against 32 activation codes, the pair sums of the first 16 scaled by sc[g] and of the
    /// last 16 by sc[g + 1], as 8 int32 partial sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Quarter(Vector256<byte> q, ref sbyte x, ref sbyte sc, int g) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q, Vector256.LoadUnsafe(ref x)),
            Vector256.Create(Vector128.Create((short)Unsafe.Add(ref sc, g)), Vector128.Create((short)Unsafe.Add(ref sc, g + 1))));

    /// <summary>Vector256.ShiftLeft on bytes (shifts 16-bit lanes: the codes shifted here are below 4, so nothing crosses
    /// into the next byte).</summary>
    private static Vector256<byte> ShiftLeftBytes(Vector256<byte> v, int bits) => Vector256.ShiftLeft(v.AsUInt16(), bits).AsByte();
}
