using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using KvIlgpu.Models;
using KvIlgpu.Models.Quantization;

namespace KvIlgpu.Compute;

/// <summary>Dot products of one ggml-quantised weight row with an activation row, without dequantising the row to
/// memory. With AVX2, every format's rows meet the 8-bit activation in integer arithmetic, as llama.cpp's kernels do: 32
/// weight codes times 32 activation codes with one vpmaddubsw (it wants one side unsigned: unsigned codes go as they
/// are, signed ones as their magnitudes against the activation carrying their signs), pairs summed with vpmaddwd, and
/// the scales applied in f32 once per block of 32 (for the k-quants, whose sub-block scales are integers applied by
/// vpmaddwd, once per super-block of 256). q4_0's and q5_0's centre comes off the codes; q6_K's offset and the
/// minimums of q4_1, q5_1, q4_K and q5_K come off through the activation's precomputed code sums. Each format has its
/// own row loop (<see cref="Rows{TKernel}"/>), compiled for that format alone so the JIT keeps its references in
/// registers. CPUs without AVX2 decode each block to f32 on the stack and take an f32 dot with the unquantised
/// activation.</summary>
internal static class QuantizedDot
{
    /// <summary>Whether the integer path serves this type on this CPU (the activation must then be quantised).</summary>
    public static bool UsesIntegerPath(WeightType type) => Avx2.IsSupported && Fma.IsSupported && type.IsQuantized();

    /// <summary>y[i] = row (first + i) of the blocks against the activation, for i below y.Length: one dispatch for
    /// many rows.</summary>
    public static void DotRows(WeightType type, ReadOnlySpan<byte> blocks, int rowBytes, int first, ReadOnlySpan<float> x,
        QuantizedActivation? xq, Span<float> y)
    {
        if (xq == null || !UsesIntegerPath(type))
        {
            for (int i = 0; i < y.Length; i++) y[i] = DotByBlocks(type, blocks.Slice((first + i) * rowBytes, rowBytes), x);
            return;
        }
        ref byte w = ref MemoryMarshal.GetReference(blocks.Slice(first * rowBytes, y.Length * rowBytes));
        if (xq.Codes.Length / QuantFormats.BlockElements(type) * QuantFormats.BlockBytes(type) != rowBytes)
            throw new ArgumentException($"a {type} row of {rowBytes} bytes does not hold {xq.Codes.Length} values", nameof(rowBytes));
        switch (type)
        {
            case WeightType.Q8_0: Rows<Q8_0Kernel>(ref w, rowBytes, xq, y); break;
            case WeightType.Q4_K: Rows<Q4KKernel>(ref w, rowBytes, xq, y); break;
            case WeightType.Q5_K: Rows<Q5KKernel>(ref w, rowBytes, xq, y); break;
            case WeightType.Q6_K: Rows<Q6KKernel>(ref w, rowBytes, xq, y); break;
            case WeightType.Q4_0: Rows<Block32Kernel<Q4_0Format>>(ref w, rowBytes, xq, y); break;
            case WeightType.Q4_1: Rows<Block32Kernel<Q4_1Format>>(ref w, rowBytes, xq, y); break;
            case WeightType.Q5_0: Rows<Block32Kernel<Q5_0Format>>(ref w, rowBytes, xq, y); break;
            case WeightType.Q5_1: Rows<Block32Kernel<Q5_1Format>>(ref w, rowBytes, xq, y); break;
            default: throw new ArgumentException($"no integer kernel for {type}", nameof(type));
        }
    }

    /// <summary>Whether <see cref="DotRows2"/> has a two-activation-row kernel for the type (else callers take DotRows per
    /// activation row).</summary>
    public static bool HasTwoRowKernel(WeightType type) => UsesIntegerPath(type);

    /// <summary>As <see cref="DotRows"/> for two activation rows at once, y0 for xq0 and y1 for xq1, each bitwise what
    /// DotRows gives it (types with <see cref="HasTwoRowKernel"/>): each block's codes are unpacked once for both.</summary>
    public static void DotRows2(WeightType type, ReadOnlySpan<byte> blocks, int rowBytes, int first, QuantizedActivation xq0,
        QuantizedActivation xq1, Span<float> y0, Span<float> y1)
    {
        if (y1.Length != y0.Length || xq1.Codes.Length != xq0.Codes.Length || xq1.BlockSize != xq0.BlockSize)
            throw new ArgumentException("the two activation rows differ in shape");
        ref byte w = ref MemoryMarshal.GetReference(blocks.Slice(first * rowBytes, y0.Length * rowBytes));
        if (xq0.Codes.Length / QuantFormats.BlockElements(type) * QuantFormats.BlockBytes(type) != rowBytes)
            throw new ArgumentException($"a {type} row of {rowBytes} bytes does not hold {xq0.Codes.Length} values", nameof(rowBytes));
        switch (type)
        {
            case WeightType.Q8_0: Rows2<Q8_0Kernel>(ref w, rowBytes, xq0, xq1, y0, y1); break;
            case WeightType.Q4_K: Rows2<Q4KKernel>(ref w, rowBytes, xq0, xq1, y0, y1); break;
            case WeightType.Q5_K: Rows2<Q5KKernel>(ref w, rowBytes, xq0, xq1, y0, y1); break;
            case WeightType.Q6_K: Rows2<Q6KKernel>(ref w, rowBytes, xq0, xq1, y0, y1); break;
            case WeightType.Q4_0: Rows2<Block32Kernel<Q4_0Format>>(ref w, rowBytes, xq0, xq1, y0, y1); break;
            case WeightType.Q4_1: Rows2<Block32Kernel<Q4_1Format>>(ref w, rowBytes, xq0, xq1, y0, y1); break;
            case WeightType.Q5_0: Rows2<Block32Kernel<Q5_0Format>>(ref w, rowBytes, xq0, xq1, y0, y1); break;
            case WeightType.Q5_1: Rows2<Block32Kernel<Q5_1Format>>(ref w, rowBytes, xq0, xq1, y0, y1); break;
            default: throw new ArgumentException($"no integer kernel for {type}", nameof(type));
        }
    }

    /// <summary>Whether <see cref="DotRows4"/> has a four-activation-row kernel for the type: q4_K and q5_K, whose
    /// super-block unpacking (6-bit scales and minimums, nibbles, fifth bits) is the costliest, so sharing it four ways
    /// pays (64-row products of perf-Q4_K_M.gguf's q4_K matrices 1.4x faster). A q6_K one was measured and was not faster
    /// (its 4096-row classifier 1.4-2.7x slower), so q6_K stays two rows a pass.</summary>
    public static bool HasFourRowKernel(WeightType type) => UsesIntegerPath(type) && type is WeightType.Q4_K or WeightType.Q5_K;

    /// <summary>As <see cref="DotRows2"/> for four activation rows at once (types with <see cref="HasFourRowKernel"/>), y[r]
    /// for xq[r], each bitwise what DotRows gives it: each super-block is unpacked once for all four.</summary>
    public static void DotRows4(WeightType type, ReadOnlySpan<byte> blocks, int rowBytes, int first, QuantizedActivation xq0,
        QuantizedActivation xq1, QuantizedActivation xq2, QuantizedActivation xq3, Span<float> y0, Span<float> y1, Span<float> y2,
        Span<float> y3)
    {
        foreach (var xq in (ReadOnlySpan<QuantizedActivation>)[xq1, xq2, xq3])
            if (xq.Codes.Length != xq0.Codes.Length || xq.BlockSize != xq0.BlockSize)
                throw new ArgumentException("the four activation rows differ in shape");
        if (y1.Length != y0.Length || y2.Length != y0.Length || y3.Length != y0.Length)
            throw new ArgumentException("the four output rows differ in length");
        ref byte w = ref MemoryMarshal.GetReference(blocks.Slice(first * rowBytes, y0.Length * rowBytes));
        if (xq0.Codes.Length / QuantFormats.BlockElements(type) * QuantFormats.BlockBytes(type) != rowBytes)
            throw new ArgumentException($"a {type} row of {rowBytes} bytes does not hold {xq0.Codes.Length} values", nameof(rowBytes));
        switch (type)
        {
            case WeightType.Q4_K: Rows4<Q4KKernel>(ref w, rowBytes, xq0, xq1, xq2, xq3, y0, y1, y2, y3); break;
            case WeightType.Q5_K: Rows4<Q5KKernel>(ref w, rowBytes, xq0, xq1, xq2, xq3, y0, y1, y2, y3); break;
            default: throw new ArgumentException($"no four-row kernel for {type}", nameof(type));
        }
    }

    /// <summary>A format's product of one weight row with four activation rows (each result bitwise its one-row result).</summary>
    private interface IFourRowKernel
    {
        static abstract (float, float, float, float) Dot4(ref byte row, QuantizedActivation xq0, QuantizedActivation xq1,
            QuantizedActivation xq2, QuantizedActivation xq3);
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Rows4<TKernel>(ref byte w, int rowBytes, QuantizedActivation xq0, QuantizedActivation xq1,
        QuantizedActivation xq2, QuantizedActivation xq3, Span<float> y0, Span<float> y1, Span<float> y2, Span<float> y3)
        where TKernel : IFourRowKernel
    {
        for (int i = 0; i < y0.Length; i++)
            (y0[i], y1[i], y2[i], y3[i]) = TKernel.Dot4(ref Unsafe.Add(ref w, (nint)i * rowBytes), xq0, xq1, xq2, xq3);
    }

    /// <summary>One format's integer dot product of a weight row (its first byte) with one activation row, and with two
    /// at once (each result bitwise the one-row result). A struct per format, so each row loop below is compiled for its
    /// format alone, with the format's constants folded and its own registers.</summary>
    private interface IRowKernel
    {
        static abstract float Dot(ref byte row, QuantizedActivation xq);
        static abstract (float, float) Dot2(ref byte row, QuantizedActivation xq0, QuantizedActivation xq1);
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Rows<TKernel>(ref byte w, int rowBytes, QuantizedActivation xq, Span<float> y) where TKernel : IRowKernel
    {
        for (int i = 0; i < y.Length; i++) y[i] = TKernel.Dot(ref Unsafe.Add(ref w, (nint)i * rowBytes), xq);
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Rows2<TKernel>(ref byte w, int rowBytes, QuantizedActivation xq0, QuantizedActivation xq1, Span<float> y0,
        Span<float> y1) where TKernel : IRowKernel
    {
        for (int i = 0; i < y0.Length; i++) (y0[i], y1[i]) = TKernel.Dot2(ref Unsafe.Add(ref w, (nint)i * rowBytes), xq0, xq1);
    }

    private readonly struct Q8_0Kernel : IRowKernel
    {
        public static float Dot(ref byte row, QuantizedActivation xq) => DotQ8_0(ref row, xq);
        public static (float, float) Dot2(ref byte row, QuantizedActivation xq0, QuantizedActivation xq1) => DotQ8_02(ref row, xq0, xq1);
    }

    private readonly struct Q4KKernel : IRowKernel, IFourRowKernel
    {
        public static float Dot(ref byte row, QuantizedActivation xq) => DotQ45K(ref row, xq, five: false);
        public static (float, float) Dot2(ref byte row, QuantizedActivation xq0, QuantizedActivation xq1) =>
            DotQ45K2(ref row, xq0, xq1, five: false);
        public static (float, float, float, float) Dot4(ref byte row, QuantizedActivation xq0, QuantizedActivation xq1,
            QuantizedActivation xq2, QuantizedActivation xq3) => DotQ45K4(ref row, xq0, xq1, xq2, xq3, five: false);
    }

    private readonly struct Q5KKernel : IRowKernel, IFourRowKernel
    {
        public static float Dot(ref byte row, QuantizedActivation xq) => DotQ45K(ref row, xq, five: true);
        public static (float, float) Dot2(ref byte row, QuantizedActivation xq0, QuantizedActivation xq1) =>
            DotQ45K2(ref row, xq0, xq1, five: true);
        public static (float, float, float, float) Dot4(ref byte row, QuantizedActivation xq0, QuantizedActivation xq1,
            QuantizedActivation xq2, QuantizedActivation xq3) => DotQ45K4(ref row, xq0, xq1, xq2, xq3, five: true);
    }

    private readonly struct Q6KKernel : IRowKernel
    {
        public static float Dot(ref byte row, QuantizedActivation xq) => DotQ6K(ref row, xq);
        public static (float, float) Dot2(ref byte row, QuantizedActivation xq0, QuantizedActivation xq1) => DotQ6K2(ref row, xq0, xq1);
    }

    /// <summary>One block-of-32 format (q4_0, q4_1, q5_0, q5_1) as a type, so <see cref="Block32Kernel{TFormat}"/>'s row
    /// loop is compiled with the format a constant.</summary>
    private interface IBlock32Format
    {
        static abstract WeightType Type { get; }
    }

    private readonly struct Q4_0Format : IBlock32Format { public static WeightType Type => WeightType.Q4_0; }
    private readonly struct Q4_1Format : IBlock32Format { public static WeightType Type => WeightType.Q4_1; }
    private readonly struct Q5_0Format : IBlock32Format { public static WeightType Type => WeightType.Q5_0; }
    private readonly struct Q5_1Format : IBlock32Format { public static WeightType Type => WeightType.Q5_1; }

    private readonly struct Block32Kernel<TFormat> : IRowKernel where TFormat : struct, IBlock32Format
    {
        public static float Dot(ref byte row, QuantizedActivation xq) => DotBlock32(ref row, xq, TFormat.Type);
        public static (float, float) Dot2(ref byte row, QuantizedActivation xq0, QuantizedActivation xq1) =>
            DotBlock32x2(ref row, xq0, xq1, TFormat.Type);
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

    /// <summary>The first element of an array, for loops that index it by Unsafe.Add (their bounds are checked once,
    /// in DotRows).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ref T Data<T>(T[] array) => ref MemoryMarshal.GetArrayDataReference(array);

    /// <summary>Signed weight codes against activation codes: vpmaddubsw wants one unsigned side, so |w| against x
    /// carrying w's sign, as llama.cpp does.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> DotSignedCodes(Vector256<sbyte> weights, Vector256<sbyte> activations) =>
        DotCodes(Avx2.Abs(weights), Avx2.Sign(activations, weights));

    /// <summary>q8_0: per block of 32, an f16 scale and 32 signed codes. Two blocks a pass into two accumulators (even
    /// and odd blocks), so the loop is not bound by one chain of fused multiply-adds; the weight, activation and scale
    /// references step forward instead of being recomputed from the block index.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float DotQ8_0(ref byte row, QuantizedActivation xq)
    {
        ref sbyte x = ref Data(xq.Codes);
        ref float dx = ref Data(xq.Scales), table = ref Data(HalfTable);
        Vector256<float> even = Vector256<float>.Zero, odd = Vector256<float>.Zero;
        int blocks = xq.Scales.Length, b = 0;
        for (; b + 1 < blocks; b += 2)
        {
            even = Fma.MultiplyAdd(Q8_0Products(ref row, ref x), Vector256.Create(Half(ref table, ref row, 0) * dx), even);
            odd = Fma.MultiplyAdd(Q8_0Products(ref Unsafe.Add(ref row, 34), ref Unsafe.Add(ref x, 32)),
                Vector256.Create(Half(ref table, ref row, 34) * Unsafe.Add(ref dx, 1)), odd);
            row = ref Unsafe.Add(ref row, 68); x = ref Unsafe.Add(ref x, 64); dx = ref Unsafe.Add(ref dx, 2);
        }
        if (b < blocks) even = Fma.MultiplyAdd(Q8_0Products(ref row, ref x), Vector256.Create(Half(ref table, ref row, 0) * dx), even);
        return Vector256.Sum(even + odd);
    }

    /// <summary>A q8_0 block's codes against 32 activation codes, as 8 f32 partial sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Q8_0Products(ref byte block, ref sbyte x) =>
        Avx.ConvertToVector256Single(DotSignedCodes(Vector256.LoadUnsafe(ref block, 2).AsSByte(), Codes(ref x, 0)));

    /// <summary><see cref="DotQ8_0"/> against two activation rows: each block's codes loaded, and their magnitudes taken,
    /// once for both; each result bitwise DotQ8_0's.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (float, float) DotQ8_02(ref byte row, QuantizedActivation xq0, QuantizedActivation xq1)
    {
        ref sbyte x0 = ref Data(xq0.Codes), x1 = ref Data(xq1.Codes);
        ref float dx0 = ref Data(xq0.Scales), dx1 = ref Data(xq1.Scales), table = ref Data(HalfTable);
        Vector256<float> even0 = Vector256<float>.Zero, odd0 = Vector256<float>.Zero;
        Vector256<float> even1 = Vector256<float>.Zero, odd1 = Vector256<float>.Zero;
        int blocks = xq0.Scales.Length, b = 0;
        for (; b + 1 < blocks; b += 2)
        {
            (even0, even1) = Q8_0Step2(ref row, ref x0, ref x1, dx0, dx1, ref table, even0, even1);
            (odd0, odd1) = Q8_0Step2(ref Unsafe.Add(ref row, 34), ref Unsafe.Add(ref x0, 32), ref Unsafe.Add(ref x1, 32),
                Unsafe.Add(ref dx0, 1), Unsafe.Add(ref dx1, 1), ref table, odd0, odd1);
            row = ref Unsafe.Add(ref row, 68); x0 = ref Unsafe.Add(ref x0, 64); x1 = ref Unsafe.Add(ref x1, 64);
            dx0 = ref Unsafe.Add(ref dx0, 2); dx1 = ref Unsafe.Add(ref dx1, 2);
        }
        if (b < blocks) (even0, even1) = Q8_0Step2(ref row, ref x0, ref x1, dx0, dx1, ref table, even0, even1);
        return (Vector256.Sum(even0 + odd0), Vector256.Sum(even1 + odd1));
    }

    /// <summary>One q8_0 block against two activation rows, each added to its accumulator as DotQ8_0 adds it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<float>, Vector256<float>) Q8_0Step2(ref byte block, ref sbyte x0, ref sbyte x1, float xs0, float xs1,
        ref float table, Vector256<float> acc0, Vector256<float> acc1)
    {
        var q = Vector256.LoadUnsafe(ref block, 2).AsSByte();
        var magnitude = Avx2.Abs(q);
        float d = Half(ref table, ref block, 0);
        return (Fma.MultiplyAdd(Avx.ConvertToVector256Single(DotCodes(magnitude, Avx2.Sign(Codes(ref x0, 0), q))),
                Vector256.Create(d * xs0), acc0),
            Fma.MultiplyAdd(Avx.ConvertToVector256Single(DotCodes(magnitude, Avx2.Sign(Codes(ref x1, 0), q))),
                Vector256.Create(d * xs1), acc1));
    }

    /// <summary>The layout of a block-of-32 format: its size, where its nibbles and fifth bits are, and the centre its
    /// codes are taken from (q4_0: 8, q5_0: 16; the formats with a minimum have none).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (int Bytes, int QhAt, int QsAt, int Centre, bool HasMin, bool Five) Block32Layout(WeightType type)
    {
        bool hasMin = type is WeightType.Q4_1 or WeightType.Q5_1, five = type is WeightType.Q5_0 or WeightType.Q5_1;
        int qhAt = hasMin ? 4 : 2;
        return ((hasMin ? 4 : 2) + (five ? 4 : 0) + 16, qhAt, qhAt + (five ? 4 : 0), hasMin ? 0 : five ? 16 : 8, hasMin, five);
    }

    /// <summary>q4_0, q4_1, q5_0 and q5_1 (blocks of 32): unsigned codes (nibble, plus the fifth bit from qh). The centred
    /// formats (x = d (q - centre)) take the centre off the codes, which then meet the activation as signed bytes; the
    /// ones with a minimum (x = d q + m) add m times the activation's block sum. Two blocks a pass into two accumulators,
    /// as in <see cref="DotQ8_0"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float DotBlock32(ref byte row, QuantizedActivation xq, WeightType type)
    {
        ref sbyte x = ref Data(xq.Codes);
        ref float dx = ref Data(xq.Scales), sums = ref Data(xq.ScaledSums32), table = ref Data(HalfTable);
        var (bytes, _, _, _, hasMin, _) = Block32Layout(type);
        Vector256<float> even = Vector256<float>.Zero, odd = Vector256<float>.Zero;
        float minimums = 0;
        int blocks = xq.Scales.Length, b = 0;
        for (; b + 1 < blocks; b += 2)
        {
            even = Fma.MultiplyAdd(Block32Products(ref row, ref x, type), Vector256.Create(Half(ref table, ref row, 0) * dx), even);
            odd = Fma.MultiplyAdd(Block32Products(ref Unsafe.Add(ref row, bytes), ref Unsafe.Add(ref x, 32), type),
                Vector256.Create(Half(ref table, ref row, bytes) * Unsafe.Add(ref dx, 1)), odd);
            if (hasMin)
            {
                minimums += Half(ref table, ref row, 2) * sums + Half(ref table, ref row, bytes + 2) * Unsafe.Add(ref sums, 1);
                sums = ref Unsafe.Add(ref sums, 2);
            }
            row = ref Unsafe.Add(ref row, 2 * bytes); x = ref Unsafe.Add(ref x, 64); dx = ref Unsafe.Add(ref dx, 2);
        }
        if (b < blocks)
        {
            even = Fma.MultiplyAdd(Block32Products(ref row, ref x, type), Vector256.Create(Half(ref table, ref row, 0) * dx), even);
            if (hasMin) minimums += Half(ref table, ref row, 2) * sums;
        }
        return Vector256.Sum(even + odd) + minimums;
    }

    /// <summary>A block-of-32 block's codes against 32 activation codes, as 8 f32 partial sums (centre taken off).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Block32Products(ref byte block, ref sbyte x, WeightType type)
    {
        var (_, _, _, centre, hasMin, _) = Block32Layout(type);
        var q = Block32Codes(ref block, type);
        return Avx.ConvertToVector256Single(hasMin ? DotCodes(q, Codes(ref x, 0))
            : DotSignedCodes(q.AsSByte() - Vector256.Create((sbyte)centre), Codes(ref x, 0)));
    }

    /// <summary>The 32 unsigned codes of a q4_0, q4_1, q5_0 or q5_1 block: values 0-15 are the low nibbles, 16-31 the high
    /// ones (exactly the two halves of the register), and for the q5 formats each code's fifth bit from qh adds 16: each
    /// byte takes the byte of qh that holds its bit (vpshufb picks within each 128-bit half; qh is repeated in every 4
    /// bytes, so indices 0-3 reach it from both), then tests that bit.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Block32Codes(ref byte block, WeightType type)
    {
        var (_, qhAt, qsAt, _, _, five) = Block32Layout(type);
        var packed = Vector128.LoadUnsafe(ref block, (nuint)qsAt);
        var q = Vector256.Create(packed, Vector128.ShiftRightLogical(packed.AsUInt16(), 4).AsByte()) & Vector256.Create((byte)0x0F);
        if (five)
        {
            var bit = Vector256.Create(0x8040201008040201UL).AsByte();
            var spread = Vector256.Create(0, 0x0101010101010101UL, 0x0202020202020202UL, 0x0303030303030303UL).AsByte();
            var qh = Vector256.Create(Unsafe.ReadUnaligned<uint>(ref Unsafe.Add(ref block, qhAt))).AsByte();
            q |= Vector256.Equals(Avx2.Shuffle(qh, spread) & bit, bit) & Vector256.Create((byte)16);
        }
        return q;
    }

    /// <summary><see cref="DotBlock32"/> against two activation rows: each block's codes assembled once for both; each
    /// result bitwise DotBlock32's.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (float, float) DotBlock32x2(ref byte row, QuantizedActivation xq0, QuantizedActivation xq1, WeightType type)
    {
        ref sbyte x0 = ref Data(xq0.Codes), x1 = ref Data(xq1.Codes);
        ref float dx0 = ref Data(xq0.Scales), dx1 = ref Data(xq1.Scales), table = ref Data(HalfTable);
        ref float sums0 = ref Data(xq0.ScaledSums32), sums1 = ref Data(xq1.ScaledSums32);
        var (bytes, _, _, _, hasMin, _) = Block32Layout(type);
        Vector256<float> even0 = Vector256<float>.Zero, odd0 = Vector256<float>.Zero;
        Vector256<float> even1 = Vector256<float>.Zero, odd1 = Vector256<float>.Zero;
        float minimums0 = 0, minimums1 = 0;
        int blocks = xq0.Scales.Length, b = 0;
        for (; b + 1 < blocks; b += 2)
        {
            (even0, even1) = Block32Step2(ref row, ref x0, ref x1, dx0, dx1, ref table, type, even0, even1);
            (odd0, odd1) = Block32Step2(ref Unsafe.Add(ref row, bytes), ref Unsafe.Add(ref x0, 32), ref Unsafe.Add(ref x1, 32),
                Unsafe.Add(ref dx0, 1), Unsafe.Add(ref dx1, 1), ref table, type, odd0, odd1);
            if (hasMin)
            {
                float m = Half(ref table, ref row, 2), mNext = Half(ref table, ref row, bytes + 2);
                minimums0 += m * sums0 + mNext * Unsafe.Add(ref sums0, 1);
                minimums1 += m * sums1 + mNext * Unsafe.Add(ref sums1, 1);
                sums0 = ref Unsafe.Add(ref sums0, 2); sums1 = ref Unsafe.Add(ref sums1, 2);
            }
            row = ref Unsafe.Add(ref row, 2 * bytes); x0 = ref Unsafe.Add(ref x0, 64); x1 = ref Unsafe.Add(ref x1, 64);
            dx0 = ref Unsafe.Add(ref dx0, 2); dx1 = ref Unsafe.Add(ref dx1, 2);
        }
        if (b < blocks)
        {
            (even0, even1) = Block32Step2(ref row, ref x0, ref x1, dx0, dx1, ref table, type, even0, even1);
            if (hasMin)
            {
                float m = Half(ref table, ref row, 2);
                minimums0 += m * sums0;
                minimums1 += m * sums1;
            }
        }
        return (Vector256.Sum(even0 + odd0) + minimums0, Vector256.Sum(even1 + odd1) + minimums1);
    }

    /// <summary>One block-of-32 block against two activation rows, each added to its accumulator as DotBlock32 adds
    /// it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<float>, Vector256<float>) Block32Step2(ref byte block, ref sbyte x0, ref sbyte x1, float xs0, float xs1,
        ref float table, WeightType type, Vector256<float> acc0, Vector256<float> acc1)
    {
        var (_, _, _, centre, hasMin, _) = Block32Layout(type);
        var q = Block32Codes(ref block, type);
        float d = Half(ref table, ref block, 0);
        Vector256<int> products0, products1;
        if (hasMin) { products0 = DotCodes(q, Codes(ref x0, 0)); products1 = DotCodes(q, Codes(ref x1, 0)); }
        else
        {
            var signed = q.AsSByte() - Vector256.Create((sbyte)centre);
            var magnitude = Avx2.Abs(signed);
            products0 = DotCodes(magnitude, Avx2.Sign(Codes(ref x0, 0), signed));
            products1 = DotCodes(magnitude, Avx2.Sign(Codes(ref x1, 0), signed));
        }
        return (Fma.MultiplyAdd(Avx.ConvertToVector256Single(products0), Vector256.Create(d * xs0), acc0),
            Fma.MultiplyAdd(Avx.ConvertToVector256Single(products1), Vector256.Create(d * xs1), acc1));
    }

    /// <summary>q4_K and q5_K against a q8_K activation: per 64 values, 32 bytes of nibbles (low: values 0-31, high: 32-63)
    /// and, for q5_K, the fifth bits from qh; x = d sc q - dmin m per sub-block of 32. The sub-block scales multiply the
    /// 16-bit pair sums (vpmaddwd, each scale spread over a register by one vpshufb), so a super-block accumulates in
    /// int32 and is converted to f32 once; the minimums meet the activation's sums of 32 in a vector of their own.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float DotQ45K(ref byte row, QuantizedActivation xq, bool five)
    {
        ref sbyte codes = ref Data(xq.Codes);
        ref float dx = ref Data(xq.Scales), table = ref Data(HalfTable);
        ref short pairs = ref Data(xq.Sums32);
        int blockBytes = five ? 176 : 144, superBlocks = xq.Scales.Length;
        var acc = Vector256<float>.Zero;
        var minimums = Vector128<float>.Zero;
        for (int s = 0; s < superBlocks; s++)
        {
            ref byte b0 = ref Unsafe.Add(ref row, blockBytes * s);
            ref sbyte x = ref Unsafe.Add(ref codes, 256 * s);
            float xs = Unsafe.Add(ref dx, s);
            var (scales, mins) = UnpackScales(ref Unsafe.Add(ref b0, 4));
            var sc = ScaleWords(scales);
            ref byte qs = ref Unsafe.Add(ref b0, five ? 48 : 16);
            var qh = five ? Vector256.LoadUnsafe(ref b0, 16) : default;
            var sum = SubBlockPair(ref qs, qh, sc, ref x, 0, five) + SubBlockPair(ref qs, qh, sc, ref x, 1, five)
                + (SubBlockPair(ref qs, qh, sc, ref x, 2, five) + SubBlockPair(ref qs, qh, sc, ref x, 3, five));
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sum), Vector256.Create(Half(ref table, ref b0, 0) * xs), acc);
            minimums = Fma.MultiplyAdd(Sse2.ConvertToVector128Single(MinimumSums(mins, ref pairs, s)),
                Vector128.Create(Half(ref table, ref b0, 2) * xs), minimums);
        }
        return Vector256.Sum(acc) - Vector128.Sum(minimums);
    }

    /// <summary><see cref="DotQ45K"/> against two activation rows at once (prefill, batched decode): each super-block's
    /// scales, codes and fifth bits are unpacked once for both. Each row's arithmetic is DotQ45K's, in its order, so each
    /// result is bitwise what DotQ45K gives (batching changes no number).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (float, float) DotQ45K2(ref byte row, QuantizedActivation xq0, QuantizedActivation xq1, bool five)
    {
        ref sbyte codes0 = ref Data(xq0.Codes), codes1 = ref Data(xq1.Codes);
        ref float dx0 = ref Data(xq0.Scales), dx1 = ref Data(xq1.Scales), table = ref Data(HalfTable);
        ref short pairs0 = ref Data(xq0.Sums32), pairs1 = ref Data(xq1.Sums32);
        int blockBytes = five ? 176 : 144, superBlocks = xq0.Scales.Length;
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero;
        Vector128<float> minimums0 = Vector128<float>.Zero, minimums1 = Vector128<float>.Zero;
        for (int s = 0; s < superBlocks; s++)
        {
            ref byte b0 = ref Unsafe.Add(ref row, blockBytes * s);
            ref sbyte x0 = ref Unsafe.Add(ref codes0, 256 * s), x1 = ref Unsafe.Add(ref codes1, 256 * s);
            float wd = Half(ref table, ref b0, 0), wmin = Half(ref table, ref b0, 2);
            float xs0 = Unsafe.Add(ref dx0, s), xs1 = Unsafe.Add(ref dx1, s);
            var (scales, mins) = UnpackScales(ref Unsafe.Add(ref b0, 4));
            var sc = ScaleWords(scales);
            ref byte qs = ref Unsafe.Add(ref b0, five ? 48 : 16);
            var qh = five ? Vector256.LoadUnsafe(ref b0, 16) : default;
            Vector256<int> a0, a1, b0Sum, b1Sum;
            (a0, a1) = SubBlockPair2(ref qs, qh, sc, ref x0, ref x1, 0, five);
            (b0Sum, b1Sum) = SubBlockPair2(ref qs, qh, sc, ref x0, ref x1, 1, five);
            var (c0, c1) = SubBlockPair2(ref qs, qh, sc, ref x0, ref x1, 2, five);
            var (d0, d1) = SubBlockPair2(ref qs, qh, sc, ref x0, ref x1, 3, five);
            acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(a0 + b0Sum + (c0 + d0)), Vector256.Create(wd * xs0), acc0);
            acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(a1 + b1Sum + (c1 + d1)), Vector256.Create(wd * xs1), acc1);
            minimums0 = Fma.MultiplyAdd(Sse2.ConvertToVector128Single(MinimumSums(mins, ref pairs0, s)), Vector128.Create(wmin * xs0),
                minimums0);
            minimums1 = Fma.MultiplyAdd(Sse2.ConvertToVector128Single(MinimumSums(mins, ref pairs1, s)), Vector128.Create(wmin * xs1),
                minimums1);
        }
        return (Vector256.Sum(acc0) - Vector128.Sum(minimums0), Vector256.Sum(acc1) - Vector128.Sum(minimums1));
    }

    /// <summary><see cref="DotQ45K"/> against four activation rows at once (prefill, batched decode): each super-block is
    /// unpacked once for all four. A row's integer sums come from the same instructions as DotQ45K's, lane by lane, and
    /// integer addition is exact in any order; its floating-point steps are DotQ45K's in its order, so each result is
    /// bitwise what DotQ45K gives.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (float, float, float, float) DotQ45K4(ref byte row, QuantizedActivation xq0, QuantizedActivation xq1,
        QuantizedActivation xq2, QuantizedActivation xq3, bool five)
    {
        ref sbyte codes0 = ref Data(xq0.Codes), codes1 = ref Data(xq1.Codes), codes2 = ref Data(xq2.Codes), codes3 = ref Data(xq3.Codes);
        ref float table = ref Data(HalfTable);
        int blockBytes = five ? 176 : 144, superBlocks = xq0.Scales.Length;
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        Vector128<float> minimums0 = default, minimums1 = default, minimums2 = default, minimums3 = default;
        for (int s = 0; s < superBlocks; s++)
        {
            ref byte b0 = ref Unsafe.Add(ref row, blockBytes * s);
            int at = 256 * s;
            var (scales, mins) = UnpackScales(ref Unsafe.Add(ref b0, 4));
            var sc = ScaleWords(scales);
            ref byte qs = ref Unsafe.Add(ref b0, five ? 48 : 16);
            var qh = five ? Vector256.LoadUnsafe(ref b0, 16) : default;
            Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default;
            SubBlockPair4(ref qs, qh, sc, ref codes0, ref codes1, ref codes2, ref codes3, at, 0, five, ref s0, ref s1, ref s2, ref s3);
            SubBlockPair4(ref qs, qh, sc, ref codes0, ref codes1, ref codes2, ref codes3, at, 1, five, ref s0, ref s1, ref s2, ref s3);
            SubBlockPair4(ref qs, qh, sc, ref codes0, ref codes1, ref codes2, ref codes3, at, 2, five, ref s0, ref s1, ref s2, ref s3);
            SubBlockPair4(ref qs, qh, sc, ref codes0, ref codes1, ref codes2, ref codes3, at, 3, five, ref s0, ref s1, ref s2, ref s3);
            float wd = Half(ref table, ref b0, 0), wmin = Half(ref table, ref b0, 2);
            acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s0), Vector256.Create(wd * xq0.Scales[s]), acc0);
            acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s1), Vector256.Create(wd * xq1.Scales[s]), acc1);
            acc2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s2), Vector256.Create(wd * xq2.Scales[s]), acc2);
            acc3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(s3), Vector256.Create(wd * xq3.Scales[s]), acc3);
            minimums0 = Fma.MultiplyAdd(Sse2.ConvertToVector128Single(MinimumSums(mins, ref Data(xq0.Sums32), s)),
                Vector128.Create(wmin * xq0.Scales[s]), minimums0);
            minimums1 = Fma.MultiplyAdd(Sse2.ConvertToVector128Single(MinimumSums(mins, ref Data(xq1.Sums32), s)),
                Vector128.Create(wmin * xq1.Scales[s]), minimums1);
            minimums2 = Fma.MultiplyAdd(Sse2.ConvertToVector128Single(MinimumSums(mins, ref Data(xq2.Sums32), s)),
                Vector128.Create(wmin * xq2.Scales[s]), minimums2);
            minimums3 = Fma.MultiplyAdd(Sse2.ConvertToVector128Single(MinimumSums(mins, ref Data(xq3.Sums32), s)),
                Vector128.Create(wmin * xq3.Scales[s]), minimums3);
        }
        return (Vector256.Sum(acc0) - Vector128.Sum(minimums0), Vector256.Sum(acc1) - Vector128.Sum(minimums1),
            Vector256.Sum(acc2) - Vector128.Sum(minimums2), Vector256.Sum(acc3) - Vector128.Sum(minimums3));
    }

    /// <summary><see cref="SubBlockPair"/> against four activation rows (their codes from offset at), the codes and scales
    /// unpacked once, each row's sum added to its own accumulator.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SubBlockPair4(ref byte qs, Vector256<byte> qh, Vector256<byte> sc, ref sbyte x0, ref sbyte x1, ref sbyte x2,
        ref sbyte x3, int at, int c, bool five, ref Vector256<int> s0, ref Vector256<int> s1, ref Vector256<int> s2,
        ref Vector256<int> s3)
    {
        var (low, high) = KQuantCodes(ref qs, qh, c, five);
        var lowScale = SpreadWord(sc, 2 * c, 2 * c);
        var highScale = SpreadWord(sc, 2 * c + 1, 2 * c + 1);
        int lowAt = at + 64 * c, highAt = lowAt + 32;
        s0 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(low, Codes(ref x0, lowAt)), lowScale)
            + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(high, Codes(ref x0, highAt)), highScale);
        s1 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(low, Codes(ref x1, lowAt)), lowScale)
            + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(high, Codes(ref x1, highAt)), highScale);
        s2 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(low, Codes(ref x2, lowAt)), lowScale)
            + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(high, Codes(ref x2, highAt)), highScale);
        s3 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(low, Codes(ref x3, lowAt)), lowScale)
            + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(high, Codes(ref x3, highAt)), highScale);
    }

    /// <summary>The eight 6-bit scales of a q4_K or q5_K super-block (one a byte) as 16-bit words, in both 128-bit halves
    /// of the register, for <see cref="SpreadWord"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> ScaleWords(ulong scales)
    {
        var words = Sse41.ConvertToVector128Int16(Vector128.CreateScalar(scales).AsByte()).AsByte();
        return Vector256.Create(words, words);
    }

    /// <summary>Word j of each 128-bit half of words, in every 16-bit lane of that half (one vpshufb; lowJ for the low
    /// half, highJ for the high one).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> SpreadWord(Vector256<byte> words, int lowJ, int highJ) =>
        Avx2.Shuffle(words, Vector256.Create(Vector128.Create((ushort)(0x0100 + 0x0202 * lowJ)),
            Vector128.Create((ushort)(0x0100 + 0x0202 * highJ))).AsByte()).AsInt16();

    /// <summary>The eight minimums (one a byte) against the activation's eight sums of 32 of super-block s: four int32
    /// pair sums (one vpmaddwd).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> MinimumSums(ulong mins, ref short pairs, int s) =>
        Sse2.MultiplyAddAdjacent(Sse41.ConvertToVector128Int16(Vector128.CreateScalar(mins).AsByte()),
            Vector128.LoadUnsafe(ref pairs, (nuint)(8 * s)));

    /// <summary>Sub-blocks 2c and 2c + 1 of a q4_K or q5_K super-block against the activation codes x (the super-block's
    /// 256): code products summed in pairs (vpmaddubsw), then times each sub-block's integer scale (vpmaddwd), as 8
    /// int32 partial sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> SubBlockPair(ref byte qs, Vector256<byte> qh, Vector256<byte> sc, ref sbyte x, int c, bool five)
    {
        var (low, high) = KQuantCodes(ref qs, qh, c, five);
        return Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(low, Codes(ref x, 64 * c)), SpreadWord(sc, 2 * c, 2 * c))
            + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(high, Codes(ref x, 64 * c + 32)), SpreadWord(sc, 2 * c + 1, 2 * c + 1));
    }

    /// <summary><see cref="SubBlockPair"/> against two activation rows, the codes and scales unpacked once.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<int>, Vector256<int>) SubBlockPair2(ref byte qs, Vector256<byte> qh, Vector256<byte> sc, ref sbyte x0,
        ref sbyte x1, int c, bool five)
    {
        var (low, high) = KQuantCodes(ref qs, qh, c, five);
        var lowScale = SpreadWord(sc, 2 * c, 2 * c);
        var highScale = SpreadWord(sc, 2 * c + 1, 2 * c + 1);
        return (Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(low, Codes(ref x0, 64 * c)), lowScale)
                + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(high, Codes(ref x0, 64 * c + 32)), highScale),
            Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(low, Codes(ref x1, 64 * c)), lowScale)
                + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(high, Codes(ref x1, 64 * c + 32)), highScale));
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
    /// scale per 16 values, applied to the 16-bit pair sums, and the offset of 32 taken off in int32 through the
    /// activation's sums of 16, so a super-block is one int32 sum and one fused multiply-add.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float DotQ6K(ref byte row, QuantizedActivation xq)
    {
        ref sbyte codes = ref Data(xq.Codes);
        ref float dx = ref Data(xq.Scales), table = ref Data(HalfTable);
        ref short sums = ref Data(xq.Sums16);
        var acc = Vector256<float>.Zero;
        for (int s = 0; s < xq.Scales.Length; s++)
        {
            ref byte b0 = ref Unsafe.Add(ref row, 210 * s);
            ref sbyte x = ref Unsafe.Add(ref codes, 256 * s);
            ref sbyte sc = ref Unsafe.As<byte, sbyte>(ref Unsafe.Add(ref b0, 192));
            var (q0, q1, q2, q3) = Q6KCodes(ref b0, 0);
            var (q4, q5, q6, q7) = Q6KCodes(ref b0, 1);
            var (first, second) = Q6KScaleWords(ref sc);
            var sum = Quarter(q0, ref x, 0, first, 0) + Quarter(q1, ref x, 32, first, 1)
                + (Quarter(q2, ref x, 64, first, 2) + Quarter(q3, ref x, 96, first, 3))
                + (Quarter(q4, ref x, 128, second, 0) + Quarter(q5, ref x, 160, second, 1)
                + (Quarter(q6, ref x, 192, second, 2) + Quarter(q7, ref x, 224, second, 3)));
            sum -= Q6KOffsets(ref sc, ref sums, s);
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sum), Vector256.Create(Half(ref table, ref b0, 208) * Unsafe.Add(ref dx, s)),
                acc);
        }
        return Vector256.Sum(acc);
    }

    /// <summary><see cref="DotQ6K"/> against two activation rows: each super-block's codes assembled once for both; each
    /// result bitwise DotQ6K's.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (float, float) DotQ6K2(ref byte row, QuantizedActivation xq0, QuantizedActivation xq1)
    {
        ref sbyte codes0 = ref Data(xq0.Codes), codes1 = ref Data(xq1.Codes);
        ref float dx0 = ref Data(xq0.Scales), dx1 = ref Data(xq1.Scales), table = ref Data(HalfTable);
        ref short sums0 = ref Data(xq0.Sums16), sums1 = ref Data(xq1.Sums16);
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero;
        for (int s = 0; s < xq0.Scales.Length; s++)
        {
            ref byte b0 = ref Unsafe.Add(ref row, 210 * s);
            ref sbyte x0 = ref Unsafe.Add(ref codes0, 256 * s), x1 = ref Unsafe.Add(ref codes1, 256 * s);
            ref sbyte sc = ref Unsafe.As<byte, sbyte>(ref Unsafe.Add(ref b0, 192));
            var (first, second) = Q6KScaleWords(ref sc);
            Vector256<int> sum0, sum1;
            {
                var (q0, q1, q2, q3) = Q6KCodes(ref b0, 0);
                sum0 = Quarter(q0, ref x0, 0, first, 0) + Quarter(q1, ref x0, 32, first, 1)
                    + (Quarter(q2, ref x0, 64, first, 2) + Quarter(q3, ref x0, 96, first, 3));
                sum1 = Quarter(q0, ref x1, 0, first, 0) + Quarter(q1, ref x1, 32, first, 1)
                    + (Quarter(q2, ref x1, 64, first, 2) + Quarter(q3, ref x1, 96, first, 3));
            }
            {
                var (q4, q5, q6, q7) = Q6KCodes(ref b0, 1);
                sum0 += Quarter(q4, ref x0, 128, second, 0) + Quarter(q5, ref x0, 160, second, 1)
                    + (Quarter(q6, ref x0, 192, second, 2) + Quarter(q7, ref x0, 224, second, 3));
                sum1 += Quarter(q4, ref x1, 128, second, 0) + Quarter(q5, ref x1, 160, second, 1)
                    + (Quarter(q6, ref x1, 192, second, 2) + Quarter(q7, ref x1, 224, second, 3));
            }
            sum0 -= Q6KOffsets(ref sc, ref sums0, s);
            sum1 -= Q6KOffsets(ref sc, ref sums1, s);
            float d = Half(ref table, ref b0, 208);
            acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sum0), Vector256.Create(d * Unsafe.Add(ref dx0, s)), acc0);
            acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sum1), Vector256.Create(d * Unsafe.Add(ref dx1, s)), acc1);
        }
        return (Vector256.Sum(acc0), Vector256.Sum(acc1));
    }

    /// <summary>The four quarters (32 codes each, 0-63) of half n of a q6_K super-block, in value order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<byte>, Vector256<byte>, Vector256<byte>, Vector256<byte>) Q6KCodes(ref byte b0, int n)
    {
        var three = Vector256.Create((byte)3);
        var (low0, high0) = Nibbles(Vector256.LoadUnsafe(ref b0, (nuint)(64 * n)));
        var (low1, high1) = Nibbles(Vector256.LoadUnsafe(ref b0, (nuint)(64 * n + 32)));
        var qh = Vector256.LoadUnsafe(ref b0, (nuint)(128 + 32 * n)).AsUInt16();
        return (low0 | ShiftLeftBytes(qh.AsByte() & three, 4),
            low1 | ShiftLeftBytes(Vector256.ShiftRightLogical(qh, 2).AsByte() & three, 4),
            high0 | ShiftLeftBytes(Vector256.ShiftRightLogical(qh, 4).AsByte() & three, 4),
            high1 | ShiftLeftBytes(Vector256.ShiftRightLogical(qh, 6).AsByte() & three, 4));
    }

    /// <summary>The sixteen int8 scales of a q6_K super-block as 16-bit words: scales 0-7 in both 128-bit halves of the
    /// first register, 8-15 in both halves of the second.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<byte>, Vector256<byte>) Q6KScaleWords(ref sbyte sc)
    {
        var words = Avx2.ConvertToVector256Int16(Vector128.LoadUnsafe(ref sc)).AsByte();
        return (Avx2.Permute2x128(words, words, 0x00), Avx2.Permute2x128(words, words, 0x11));
    }

    /// <summary>Sixteen times each scale against its 16 values' activation code sums (two vpmaddwd's worth in one), times
    /// 32: the offset to take off super-block s's int32 sum.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Q6KOffsets(ref sbyte sc, ref short sums, int s) =>
        Avx2.ShiftLeftLogical(Avx2.MultiplyAddAdjacent(Avx2.ConvertToVector256Int16(Vector128.LoadUnsafe(ref sc)),
            Vector256.LoadUnsafe(ref sums, (nuint)(16 * s))), 5);

    /// <summary>Quarter k of a half of a q6_K super-block (32 codes, 0-63) against the 32 activation codes at x + at: the
    /// pair sums of the first 16 scaled by the half's scale 2k and of the last 16 by its scale 2k + 1, as 8 int32 partial
    /// sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Quarter(Vector256<byte> q, ref sbyte x, int at, Vector256<byte> scaleWords, int k) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q, Codes(ref x, at)), SpreadWord(scaleWords, 2 * k, 2 * k + 1));

    /// <summary>Vector256.ShiftLeft on bytes (shifts 16-bit lanes: the codes shifted here are below 4, so nothing crosses
    /// into the next byte).</summary>
    private static Vector256<byte> ShiftLeftBytes(Vector256<byte> v, int bits) => Vector256.ShiftLeft(v.AsUInt16(), bits).AsByte();
}
