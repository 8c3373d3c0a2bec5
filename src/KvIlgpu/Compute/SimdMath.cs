using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace KvIlgpu.Compute;

/// <summary>Dot products of an f32 vector with f32, f16 or bf16 weight rows, unrolled over Vector256 with FMA.
/// The 16-bit formats are widened in registers, so a row is read from memory at its stored size. Their products take
/// the activation row in pair order (<see cref="ToPairOrder"/>, made once per matrix product and used for every weight
/// row), which lets a pair of 16-bit weights widen in place into an even- and an odd-indexed f32 lane.</summary>
internal static class SimdMath
{
    /// <summary>Writes x in the pair order the f16 and bf16 products take: within each block of 16 values (32 in the
    /// wide order), the 8 even-indexed values, then the 8 odd-indexed ones; blocks only as far as the vector loops go
    /// (whole 32-value steps, 64 in the wide order), the values after them as they are. Without vector hardware the
    /// order is x's own. With scaleForHalves, the reordered values are also multiplied by 2^112 where that is exact
    /// (Vector256 order, every |x| below 2^15), which saves the f16 widening its multiply; the products must then be
    /// told so (prescaled), and give bitwise what they give unscaled: each FMA's product is the same real number.
    /// Returns whether it scaled.</summary>
    public static bool ToPairOrder(ReadOnlySpan<float> x, Span<float> dst, bool scaleForHalves = false)
    {
        int n = x.Length;
        int block = Wide(n) ? 32 : 16, half = block / 2;
        int covered = Vector256.IsHardwareAccelerated ? n - n % (2 * block) : 0;
        bool scale = scaleForHalves && covered > 0 && !Wide(n) && TensorPrimitives.MaxMagnitude(x) < 32768f;
        float factor = scale ? HalfRescale : 1f;
        for (int b = 0; b < covered; b += block)
            for (int k = 0; k < half; k++)
            {
                dst[b + k] = x[b + 2 * k] * factor;
                dst[b + half + k] = x[b + 2 * k + 1] * factor;
            }
        x[covered..].CopyTo(dst[covered..]);
        return scale;
    }

    /// <summary>2^112: an f16's exponent and mantissa, put where an f32's are, read as an f32 are 2^-112 times its value.</summary>
    private const float HalfRescale = 5.192297e+33f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Fmadd(Vector256<float> a, Vector256<float> b, Vector256<float> acc) =>
        Fma.IsSupported ? Fma.MultiplyAdd(a, b, acc) : acc + a * b;

    /// <summary>Whether the weight-row dot products (Dot, Dot2, Dot2x2) take the wide order: four 16-lane accumulators per
    /// product over 64-value steps, the several-row products (prefill, batched decode) on Vector512 and the one-row
    /// product (decode alone) in the same order on Vector256 halves, every product bitwise the same either way, so
    /// batching changes no number. Off unless asked for (environment variable KVILGPU_SIMD=vector512) and the CPU has
    /// AVX-512 (DOTNET_EnableAVX512=0 also keeps it off): on this project's AMD EPYC (Zen 4) the wide order made 16-bit
    /// prefill 1.2-1.5x faster but a decode step's matrices 1.4-1.6x slower (perf weight-gemv), and decode matters more.
    /// Settable so tests run both orders in one process.</summary>
    internal static bool UseVector512
    {
        get => Vector512.IsHardwareAccelerated && _wide;
        set => _wide = value;
    }

    // Read once at first use of this class (a field initialiser; the class's callers read it per call, not per element).
    private static bool _wide = string.Equals(Environment.GetEnvironmentVariable("KVILGPU_SIMD"), "vector512",
        StringComparison.OrdinalIgnoreCase);

    /// <summary>Whether a row of n values takes the Vector512 path.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool Wide(int n) => UseVector512 && n >= 64;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Fmadd(Vector512<float> a, Vector512<float> b, Vector512<float> acc) =>
        Avx512F.IsSupported ? Avx512F.FusedMultiplyAdd(a, b, acc) : acc + a * b;

    // The two widenings below are the Vector256 ones (further down) at twice the width: .NET 8, which this library also
    // targets, has no width-generic vector type to write them once. They must stay lane-for-lane the same: the wide order's
    // several-row products widen with these and its one-row product with the Vector256 ones, and the vector-width tests
    // check the two are bitwise equal.

    /// <summary>32 bf16 values (16 pairs) to their even- and odd-indexed f32 vectors.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector512<float> Even, Vector512<float> Odd) WidenBf16(Vector512<ushort> v)
    {
        var pairs = v.AsUInt32();
        return (Vector512.ShiftLeft(pairs, 16).AsSingle(), (pairs & Vector512.Create(0xFFFF0000u)).AsSingle());
    }

    /// <summary>32 f16 values (16 pairs) to their even- and odd-indexed f32 vectors, as the Vector256 widening does.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector512<float> Even, Vector512<float> Odd) WidenF16(Vector512<ushort> v)
    {
        var pairs = v.AsInt32();
        var mask = Vector512.Create(unchecked((int)0x8FFFE000));
        var magic = Vector512.Create(HalfRescale);
        var even = Vector512.ShiftRightArithmetic(Vector512.ShiftLeft(pairs, 16), 3) & mask;
        var odd = Vector512.ShiftRightArithmetic(pairs, 3) & mask;
        return (even.AsSingle() * magic, odd.AsSingle() * magic);
    }

    /// <summary>Four f32 accumulators of one product on the Vector512 path, summed as every path sums them.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Total(Vector512<float> a0, Vector512<float> a1, Vector512<float> a2, Vector512<float> a3)
    {
        var t = (a0 + a1) + (a2 + a3);
        return Vector256.Sum(t.GetLower() + t.GetUpper());
    }

    /// <summary>The f32 weights of one 64-value step, or the 16-bit ones widened: four vectors.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector512<float>, Vector512<float>, Vector512<float>, Vector512<float>) Chunk512(ReadOnlySpan<float> wf,
        ReadOnlySpan<ushort> w16, WeightKind kind, int i)
    {
        if (kind == WeightKind.F32)
        {
            ref float wr = ref MemoryMarshal.GetReference(wf);
            return (Vector512.LoadUnsafe(ref wr, (nuint)i), Vector512.LoadUnsafe(ref wr, (nuint)i + 16),
                Vector512.LoadUnsafe(ref wr, (nuint)i + 32), Vector512.LoadUnsafe(ref wr, (nuint)i + 48));
        }
        ref ushort hr = ref MemoryMarshal.GetReference(w16);
        var v0 = Vector512.LoadUnsafe(ref hr, (nuint)i);
        var v1 = Vector512.LoadUnsafe(ref hr, (nuint)i + 32);
        var (f0, f1) = kind == WeightKind.BF16 ? WidenBf16(v0) : WidenF16(v0);
        var (f2, f3) = kind == WeightKind.BF16 ? WidenBf16(v1) : WidenF16(v1);
        return (f0, f1, f2, f3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Weight(ReadOnlySpan<float> wf, ReadOnlySpan<ushort> w16, WeightKind kind, int i) => kind switch
    {
        WeightKind.F32 => wf[i],
        WeightKind.BF16 => Models.FloatBits.FromBFloat16(w16[i]),
        _ => Models.FloatBits.FromHalf(w16[i]),
    };

    // The Vector512 paths of Dot, Dot2 and Dot2x2, one method each so every loop keeps only its own accumulators. All
    // share one order: four accumulators per product over 64-value steps (lanes 16m..16m+15 of a step into accumulator
    // m), summed ((a0 + a1) + (a2 + a3)), then the tail value by value.

    /// <summary>One f32 row in the wide order, with 32-byte loads: each Vector512 accumulator of the wide paths is kept as
    /// its two Vector256 halves (a: lanes 0-7, b: lanes 8-15), so every lane sees the same operations in the same order
    /// (bitwise the same result), while decode, which streams one row from memory, keeps the narrower loads that measured
    /// faster here.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Dot512(ReadOnlySpan<float> x, ReadOnlySpan<float> w)
    {
        int n = x.Length, i = 0;
        ref float xr = ref MemoryMarshal.GetReference(x);
        ref float wr = ref MemoryMarshal.GetReference(w);
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
        for (; i <= n - 64; i += 64)
        {
            a0 = Fmadd(Vector256.LoadUnsafe(ref xr, (nuint)i), Vector256.LoadUnsafe(ref wr, (nuint)i), a0);
            b0 = Fmadd(Vector256.LoadUnsafe(ref xr, (nuint)i + 8), Vector256.LoadUnsafe(ref wr, (nuint)i + 8), b0);
            a1 = Fmadd(Vector256.LoadUnsafe(ref xr, (nuint)i + 16), Vector256.LoadUnsafe(ref wr, (nuint)i + 16), a1);
            b1 = Fmadd(Vector256.LoadUnsafe(ref xr, (nuint)i + 24), Vector256.LoadUnsafe(ref wr, (nuint)i + 24), b1);
            a2 = Fmadd(Vector256.LoadUnsafe(ref xr, (nuint)i + 32), Vector256.LoadUnsafe(ref wr, (nuint)i + 32), a2);
            b2 = Fmadd(Vector256.LoadUnsafe(ref xr, (nuint)i + 40), Vector256.LoadUnsafe(ref wr, (nuint)i + 40), b2);
            a3 = Fmadd(Vector256.LoadUnsafe(ref xr, (nuint)i + 48), Vector256.LoadUnsafe(ref wr, (nuint)i + 48), a3);
            b3 = Fmadd(Vector256.LoadUnsafe(ref xr, (nuint)i + 56), Vector256.LoadUnsafe(ref wr, (nuint)i + 56), b3);
        }
        float sum = Vector256.Sum(((a0 + a1) + (a2 + a3)) + ((b0 + b1) + (b2 + b3)));
        for (; i < n; i++) sum += x[i] * w[i];
        return sum;
    }

    /// <summary>The wide order for one row of f16 or bf16 weights (kept apart from the f32 one so neither loop carries the
    /// other's branches).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Dot512(ReadOnlySpan<float> x, ReadOnlySpan<ushort> w16, bool bf16)
    {
        int n = x.Length, i = 0;
        ref float xr = ref MemoryMarshal.GetReference(x);
        ref ushort hr = ref MemoryMarshal.GetReference(w16);
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
        for (; i <= n - 64; i += 64)
        {
            var h0 = Vector256.LoadUnsafe(ref hr, (nuint)i); var h1 = Vector256.LoadUnsafe(ref hr, (nuint)i + 16);
            var h2 = Vector256.LoadUnsafe(ref hr, (nuint)i + 32); var h3 = Vector256.LoadUnsafe(ref hr, (nuint)i + 48);
            // The wide order's 32-value pair blocks: h0 and h1 hold the low and high halves of a block's even values
            // (accumulators a0, b0) and of its odd ones (a1, b1); h2 and h3 those of the next block.
            var (e0, o0) = bf16 ? WidenBf16(h0) : WidenF16(h0);
            var (e1, o1) = bf16 ? WidenBf16(h1) : WidenF16(h1);
            var (e2, o2) = bf16 ? WidenBf16(h2) : WidenF16(h2);
            var (e3, o3) = bf16 ? WidenBf16(h3) : WidenF16(h3);
            a0 = Fmadd(Vector256.LoadUnsafe(ref xr, (nuint)i), e0, a0);
            b0 = Fmadd(Vector256.LoadUnsafe(ref xr, (nuint)i + 8), e1, b0);
            a1 = Fmadd(Vector256.LoadUnsafe(ref xr, (nuint)i + 16), o0, a1);
            b1 = Fmadd(Vector256.LoadUnsafe(ref xr, (nuint)i + 24), o1, b1);
            a2 = Fmadd(Vector256.LoadUnsafe(ref xr, (nuint)i + 32), e2, a2);
            b2 = Fmadd(Vector256.LoadUnsafe(ref xr, (nuint)i + 40), e3, b2);
            a3 = Fmadd(Vector256.LoadUnsafe(ref xr, (nuint)i + 48), o2, a3);
            b3 = Fmadd(Vector256.LoadUnsafe(ref xr, (nuint)i + 56), o3, b3);
        }
        float sum = Vector256.Sum(((a0 + a1) + (a2 + a3)) + ((b0 + b1) + (b2 + b3)));
        for (; i < n; i++) sum += x[i] * (bf16 ? Models.FloatBits.FromBFloat16(w16[i]) : Models.FloatBits.FromHalf(w16[i]));
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static (float, float) Dot2_512(ReadOnlySpan<float> x0, ReadOnlySpan<float> x1, ReadOnlySpan<float> wf,
        ReadOnlySpan<ushort> w16, WeightKind kind)
    {
        int n = x0.Length, i = 0;
        ref float xr0 = ref MemoryMarshal.GetReference(x0);
        ref float xr1 = ref MemoryMarshal.GetReference(x1);
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, c0 = default, c1 = default, c2 = default, c3 = default;
        for (; i <= n - 64; i += 64)
        {
            var (u0, u1, u2, u3) = Chunk512(wf, w16, kind, i);
            a0 = Fmadd(Vector512.LoadUnsafe(ref xr0, (nuint)i), u0, a0);
            a1 = Fmadd(Vector512.LoadUnsafe(ref xr0, (nuint)i + 16), u1, a1);
            a2 = Fmadd(Vector512.LoadUnsafe(ref xr0, (nuint)i + 32), u2, a2);
            a3 = Fmadd(Vector512.LoadUnsafe(ref xr0, (nuint)i + 48), u3, a3);
            c0 = Fmadd(Vector512.LoadUnsafe(ref xr1, (nuint)i), u0, c0);
            c1 = Fmadd(Vector512.LoadUnsafe(ref xr1, (nuint)i + 16), u1, c1);
            c2 = Fmadd(Vector512.LoadUnsafe(ref xr1, (nuint)i + 32), u2, c2);
            c3 = Fmadd(Vector512.LoadUnsafe(ref xr1, (nuint)i + 48), u3, c3);
        }
        float s0 = Total(a0, a1, a2, a3), s1 = Total(c0, c1, c2, c3);
        for (; i < n; i++)
        {
            float w = Weight(wf, w16, kind, i);
            s0 += x0[i] * w;
            s1 += x1[i] * w;
        }
        return (s0, s1);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static (float, float, float, float) Dot2x2_512(ReadOnlySpan<float> x0, ReadOnlySpan<float> x1, ReadOnlySpan<float> wf0,
        ReadOnlySpan<ushort> w160, ReadOnlySpan<float> wf1, ReadOnlySpan<ushort> w161, WeightKind kind)
    {
        int n = x0.Length, i = 0;
        ref float xr0 = ref MemoryMarshal.GetReference(x0);
        ref float xr1 = ref MemoryMarshal.GetReference(x1);
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, d0 = default, d1 = default, d2 = default, d3 = default;
        for (; i <= n - 64; i += 64)
        {
            var (u0, u1, u2, u3) = Chunk512(wf0, w160, kind, i);
            var (v0, v1, v2, v3) = Chunk512(wf1, w161, kind, i);
            var x = Vector512.LoadUnsafe(ref xr0, (nuint)i); var y = Vector512.LoadUnsafe(ref xr1, (nuint)i);
            a0 = Fmadd(x, u0, a0); b0 = Fmadd(x, v0, b0); c0 = Fmadd(y, u0, c0); d0 = Fmadd(y, v0, d0);
            x = Vector512.LoadUnsafe(ref xr0, (nuint)i + 16); y = Vector512.LoadUnsafe(ref xr1, (nuint)i + 16);
            a1 = Fmadd(x, u1, a1); b1 = Fmadd(x, v1, b1); c1 = Fmadd(y, u1, c1); d1 = Fmadd(y, v1, d1);
            x = Vector512.LoadUnsafe(ref xr0, (nuint)i + 32); y = Vector512.LoadUnsafe(ref xr1, (nuint)i + 32);
            a2 = Fmadd(x, u2, a2); b2 = Fmadd(x, v2, b2); c2 = Fmadd(y, u2, c2); d2 = Fmadd(y, v2, d2);
            x = Vector512.LoadUnsafe(ref xr0, (nuint)i + 48); y = Vector512.LoadUnsafe(ref xr1, (nuint)i + 48);
            a3 = Fmadd(x, u3, a3); b3 = Fmadd(x, v3, b3); c3 = Fmadd(y, u3, c3); d3 = Fmadd(y, v3, d3);
        }
        float s00 = Total(a0, a1, a2, a3), s01 = Total(b0, b1, b2, b3), s10 = Total(c0, c1, c2, c3), s11 = Total(d0, d1, d2, d3);
        for (; i < n; i++)
        {
            float p = Weight(wf0, w160, kind, i), q = Weight(wf1, w161, kind, i);
            s00 += x0[i] * p; s01 += x0[i] * q;
            s10 += x1[i] * p; s11 += x1[i] * q;
        }
        return (s00, s01, s10, s11);
    }

    /// <summary>dst = softmax(x), with the maximum subtracted first: TensorPrimitives.SoftMax exponentiates its inputs as
    /// they are, so any input above about 88 overflows to infinity and the result is NaN (attention scores and logits
    /// divided by a low temperature get there). x and dst may be the same span.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void SoftMax(ReadOnlySpan<float> x, Span<float> dst)
    {
        float max = TensorPrimitives.Max(x);
        TensorPrimitives.Subtract(x, max, dst);
        TensorPrimitives.SoftMax(dst, dst);
    }

    /// <summary>x . w for an f32 weight row: the wide order where it is in use, else <see cref="F32Products"/>' order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Dot(ReadOnlySpan<float> x, ReadOnlySpan<float> w) => Wide(x.Length) ? Dot512(x, w) : F32Products.Dot(x, w);

    /// <summary>Two dot products sharing one weight row (16-bit weights: activation rows in pair order): each weight chunk
    /// is loaded (and widened) once for both activation rows. Each row's accumulation order is exactly that of Dot, so
    /// results are bitwise identical to two Dot calls: batching never changes a sequence's numbers.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static (float, float) Dot2(ReadOnlySpan<float> x0, ReadOnlySpan<float> x1, ReadOnlySpan<float> wf, ReadOnlySpan<ushort> w16,
        WeightKind kind)
    {
        int n = x0.Length, i = 0;
        if (Wide(n)) return Dot2_512(x0, x1, wf, w16, kind);
        if (kind == WeightKind.F32) return F32Products.Dot2(x0, x1, wf);
        if (!Vector256.IsHardwareAccelerated) return (Dot(x0, w16, kind == WeightKind.BF16), Dot(x1, w16, kind == WeightKind.BF16));
        ref float xr0 = ref MemoryMarshal.GetReference(x0);
        ref float xr1 = ref MemoryMarshal.GetReference(x1);
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
        for (; i <= n - 32; i += 32)
        {
            ref ushort wr = ref MemoryMarshal.GetReference(w16);
            var w0 = Vector256.LoadUnsafe(ref wr, (nuint)i);
            var w1 = Vector256.LoadUnsafe(ref wr, (nuint)i + 16);
            var (f0, f1) = kind == WeightKind.BF16 ? WidenBf16(w0) : WidenF16(w0);
            var (f2, f3) = kind == WeightKind.BF16 ? WidenBf16(w1) : WidenF16(w1);
            a0 = Fmadd(Vector256.LoadUnsafe(ref xr0, (nuint)i), f0, a0);
            a1 = Fmadd(Vector256.LoadUnsafe(ref xr0, (nuint)i + 8), f1, a1);
            a2 = Fmadd(Vector256.LoadUnsafe(ref xr0, (nuint)i + 16), f2, a2);
            a3 = Fmadd(Vector256.LoadUnsafe(ref xr0, (nuint)i + 24), f3, a3);
            b0 = Fmadd(Vector256.LoadUnsafe(ref xr1, (nuint)i), f0, b0);
            b1 = Fmadd(Vector256.LoadUnsafe(ref xr1, (nuint)i + 8), f1, b1);
            b2 = Fmadd(Vector256.LoadUnsafe(ref xr1, (nuint)i + 16), f2, b2);
            b3 = Fmadd(Vector256.LoadUnsafe(ref xr1, (nuint)i + 24), f3, b3);
        }
        float s0 = Vector256.Sum((a0 + a1) + (a2 + a3)), s1 = Vector256.Sum((b0 + b1) + (b2 + b3));
        for (; i < n; i++)
        {
            float w = kind == WeightKind.BF16 ? Models.FloatBits.FromBFloat16(w16[i]) : Models.FloatBits.FromHalf(w16[i]);
            s0 += x0[i] * w;
            s1 += x1[i] * w;
        }
        return (s0, s1);
    }

    public enum WeightKind { F32, F16, BF16 }

    /// <summary>Attention scores of one query against count cached rows (row t at keys[t * stride], width q.Length, a
    /// multiple of 8): dst[t] = (q . k_t) * scale * rowScales[t] (rowScales empty: 1). Four rows at a time share each
    /// query chunk, which stays in a register, so a 64-wide head costs 8 FMAs a row and one reduction per four rows.
    /// Accumulation: one accumulator per row over 8-value chunks in order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Scores(ReadOnlySpan<float> q, ReadOnlySpan<float> keys, int stride, int count, float scale,
        ReadOnlySpan<float> rowScales, Span<float> dst)
    {
        int d = q.Length, t = 0;
        ref float qr = ref MemoryMarshal.GetReference(q);
        ref float kr = ref MemoryMarshal.GetReference(keys);
        for (; t + 3 < count; t += 4)
        {
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            nuint r0 = (nuint)(t * stride), r1 = r0 + (nuint)stride, r2 = r1 + (nuint)stride, r3 = r2 + (nuint)stride;
            for (int c = 0; c < d; c += 8)
            {
                var qv = Vector256.LoadUnsafe(ref qr, (nuint)c);
                a0 = Fmadd(qv, Vector256.LoadUnsafe(ref kr, r0 + (nuint)c), a0);
                a1 = Fmadd(qv, Vector256.LoadUnsafe(ref kr, r1 + (nuint)c), a1);
                a2 = Fmadd(qv, Vector256.LoadUnsafe(ref kr, r2 + (nuint)c), a2);
                a3 = Fmadd(qv, Vector256.LoadUnsafe(ref kr, r3 + (nuint)c), a3);
            }
            dst[t] = Vector256.Sum(a0) * (rowScales.IsEmpty ? scale : scale * rowScales[t]);
            dst[t + 1] = Vector256.Sum(a1) * (rowScales.IsEmpty ? scale : scale * rowScales[t + 1]);
            dst[t + 2] = Vector256.Sum(a2) * (rowScales.IsEmpty ? scale : scale * rowScales[t + 2]);
            dst[t + 3] = Vector256.Sum(a3) * (rowScales.IsEmpty ? scale : scale * rowScales[t + 3]);
        }
        for (; t < count; t++)
        {
            var a = Vector256<float>.Zero;
            for (int c = 0; c < d; c += 8)
                a = Fmadd(Vector256.LoadUnsafe(ref qr, (nuint)c), Vector256.LoadUnsafe(ref kr, (nuint)(t * stride + c)), a);
            dst[t] = Vector256.Sum(a) * (rowScales.IsEmpty ? scale : scale * rowScales[t]);
        }
    }

    /// <summary>dst += sum over t of weights[t] * rowScale[t] * v_t for count cached rows (row t at values[t * stride],
    /// width dst.Length, a multiple of 8; rowScales empty: 1). The output stays in registers 64 values at a time while
    /// every row is added, in order, with one FMA per 8 values.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void WeightedSum(ReadOnlySpan<float> values, int stride, int count, ReadOnlySpan<float> weights,
        ReadOnlySpan<float> rowScales, Span<float> dst)
    {
        int d = dst.Length;
        ref float vr = ref MemoryMarshal.GetReference(values);
        ref float o = ref MemoryMarshal.GetReference(dst);
        int c0 = 0;
        for (; c0 + 32 <= d; c0 += 32)
        {
            var a0 = Vector256.LoadUnsafe(ref o, (nuint)c0); var a1 = Vector256.LoadUnsafe(ref o, (nuint)c0 + 8);
            var a2 = Vector256.LoadUnsafe(ref o, (nuint)c0 + 16); var a3 = Vector256.LoadUnsafe(ref o, (nuint)c0 + 24);
            for (int t = 0; t < count; t++)
            {
                var p = Vector256.Create(rowScales.IsEmpty ? weights[t] : weights[t] * rowScales[t]);
                nuint at = (nuint)(t * stride + c0);
                a0 = Fmadd(Vector256.LoadUnsafe(ref vr, at), p, a0);
                a1 = Fmadd(Vector256.LoadUnsafe(ref vr, at + 8), p, a1);
                a2 = Fmadd(Vector256.LoadUnsafe(ref vr, at + 16), p, a2);
                a3 = Fmadd(Vector256.LoadUnsafe(ref vr, at + 24), p, a3);
            }
            a0.StoreUnsafe(ref o, (nuint)c0); a1.StoreUnsafe(ref o, (nuint)c0 + 8);
            a2.StoreUnsafe(ref o, (nuint)c0 + 16); a3.StoreUnsafe(ref o, (nuint)c0 + 24);
        }
        for (; c0 < d; c0 += 8)
        {
            var a = Vector256.LoadUnsafe(ref o, (nuint)c0);
            for (int t = 0; t < count; t++)
                a = Fmadd(Vector256.LoadUnsafe(ref vr, (nuint)(t * stride + c0)),
                    Vector256.Create(rowScales.IsEmpty ? weights[t] : weights[t] * rowScales[t]), a);
            a.StoreUnsafe(ref o, (nuint)c0);
        }
    }

    /// <summary>Two f32 weight rows against two activation rows: four dot products, each bitwise what Dot gives (the wide
    /// order's Vector512 block, or <see cref="F32Products.Dot2x2"/>).</summary>
    public static (float X0W0, float X0W1, float X1W0, float X1W1) Dot2x2(ReadOnlySpan<float> x0, ReadOnlySpan<float> x1,
        ReadOnlySpan<float> w0, ReadOnlySpan<float> w1) =>
        Wide(x0.Length) ? Dot2x2_512(x0, x1, w0, default, w1, default, WeightKind.F32) : F32Products.Dot2x2(x0, x1, w0, w1);

    /// <summary>Whether the 16-bit weights' three-by-two block runs: it holds 24 accumulators, which need AVX-512's 32
    /// vector registers (with AVX2's 16 they would spill).</summary>
    public static bool ThreeRowBlocks => Avx512F.VL.IsSupported && !UseVector512;

    /// <summary>Whether the f32 three-by-two block runs: everywhere but in the wide order, which has its own blocks (its 12
    /// accumulators fit AVX2's registers; see <see cref="F32Products"/>).</summary>
    public static bool F32ThreeRowBlocks => !UseVector512;

    /// <summary>Two f32 weight rows against three activation rows, in the Vector256 order (<see cref="F32Products.Dot3x2"/>):
    /// dst receives x0.w0, x0.w1, x1.w0, x1.w1, x2.w0, x2.w1.</summary>
    public static void Dot3x2(ReadOnlySpan<float> x0, ReadOnlySpan<float> x1, ReadOnlySpan<float> x2, ReadOnlySpan<float> w0,
        ReadOnlySpan<float> w1, Span<float> dst) => F32Products.Dot3x2(x0, x1, x2, w0, w1, dst);

    /// <summary>The three-by-two block for f16 or bf16 weight rows (activation rows in pair order; prescaled as
    /// <see cref="ToPairOrder"/> returned): each 16-value chunk of a weight row is widened once for three activation rows,
    /// every product bitwise what <see cref="Dot(ReadOnlySpan{float}, ReadOnlySpan{ushort}, bool, bool)"/> gives.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Dot3x2(ReadOnlySpan<float> x0, ReadOnlySpan<float> x1, ReadOnlySpan<float> x2, ReadOnlySpan<ushort> w0,
        ReadOnlySpan<ushort> w1, bool bf16, bool prescaled, Span<float> dst)
    {
        if (bf16) Dot3x2<Bf16Pairs>(x0, x1, x2, w0, w1, dst);
        else if (prescaled) Dot3x2<F16PrescaledPairs>(x0, x1, x2, w0, w1, dst);
        else Dot3x2<F16Pairs>(x0, x1, x2, w0, w1, dst);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Dot3x2<T>(ReadOnlySpan<float> x0, ReadOnlySpan<float> x1, ReadOnlySpan<float> x2, ReadOnlySpan<ushort> w0,
        ReadOnlySpan<ushort> w1, Span<float> dst) where T : struct, IPairWidening
    {
        int n = x0.Length, i = 0;
        ref float xr0 = ref MemoryMarshal.GetReference(x0);
        ref float xr1 = ref MemoryMarshal.GetReference(x1);
        ref float xr2 = ref MemoryMarshal.GetReference(x2);
        ref ushort wr0 = ref MemoryMarshal.GetReference(w0);
        ref ushort wr1 = ref MemoryMarshal.GetReference(w1);
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
        Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default, d0 = default, d1 = default, d2 = default, d3 = default;
        Vector256<float> e0 = default, e1 = default, e2 = default, e3 = default, f0 = default, f1 = default, f2 = default, f3 = default;
        var mask = T.Mask;
        var scale = T.Scale;
        for (; i <= n - 32; i += 32)
        {
            nuint at = (nuint)i;
            var (u0, u1) = T.Widen(Vector256.LoadUnsafe(ref wr0, at), mask, scale);
            var (v0, v1) = T.Widen(Vector256.LoadUnsafe(ref wr1, at), mask, scale);
            var x = Vector256.LoadUnsafe(ref xr0, at); a0 = Fmadd(x, u0, a0); b0 = Fmadd(x, v0, b0);
            x = Vector256.LoadUnsafe(ref xr1, at); c0 = Fmadd(x, u0, c0); d0 = Fmadd(x, v0, d0);
            x = Vector256.LoadUnsafe(ref xr2, at); e0 = Fmadd(x, u0, e0); f0 = Fmadd(x, v0, f0);
            x = Vector256.LoadUnsafe(ref xr0, at + 8); a1 = Fmadd(x, u1, a1); b1 = Fmadd(x, v1, b1);
            x = Vector256.LoadUnsafe(ref xr1, at + 8); c1 = Fmadd(x, u1, c1); d1 = Fmadd(x, v1, d1);
            x = Vector256.LoadUnsafe(ref xr2, at + 8); e1 = Fmadd(x, u1, e1); f1 = Fmadd(x, v1, f1);
            (u0, u1) = T.Widen(Vector256.LoadUnsafe(ref wr0, at + 16), mask, scale);
            (v0, v1) = T.Widen(Vector256.LoadUnsafe(ref wr1, at + 16), mask, scale);
            x = Vector256.LoadUnsafe(ref xr0, at + 16); a2 = Fmadd(x, u0, a2); b2 = Fmadd(x, v0, b2);
            x = Vector256.LoadUnsafe(ref xr1, at + 16); c2 = Fmadd(x, u0, c2); d2 = Fmadd(x, v0, d2);
            x = Vector256.LoadUnsafe(ref xr2, at + 16); e2 = Fmadd(x, u0, e2); f2 = Fmadd(x, v0, f2);
            x = Vector256.LoadUnsafe(ref xr0, at + 24); a3 = Fmadd(x, u1, a3); b3 = Fmadd(x, v1, b3);
            x = Vector256.LoadUnsafe(ref xr1, at + 24); c3 = Fmadd(x, u1, c3); d3 = Fmadd(x, v1, d3);
            x = Vector256.LoadUnsafe(ref xr2, at + 24); e3 = Fmadd(x, u1, e3); f3 = Fmadd(x, v1, f3);
        }
        float s00 = Vector256.Sum((a0 + a1) + (a2 + a3)), s01 = Vector256.Sum((b0 + b1) + (b2 + b3));
        float s10 = Vector256.Sum((c0 + c1) + (c2 + c3)), s11 = Vector256.Sum((d0 + d1) + (d2 + d3));
        float s20 = Vector256.Sum((e0 + e1) + (e2 + e3)), s21 = Vector256.Sum((f0 + f1) + (f2 + f3));
        for (; i < n; i++)
        {
            float p = T.ToSingle(w0[i]), q = T.ToSingle(w1[i]);
            s00 += x0[i] * p; s01 += x0[i] * q;
            s10 += x1[i] * p; s11 += x1[i] * q;
            s20 += x2[i] * p; s21 += x2[i] * q;
        }
        dst[0] = s00; dst[1] = s01; dst[2] = s10; dst[3] = s11; dst[4] = s20; dst[5] = s21;
    }

    /// <summary>The two-by-two block for f16 or bf16 weight rows (activation rows in pair order): each 16-value chunk of
    /// a row is widened once for both activation rows, and every product is bitwise what
    /// <see cref="Dot(ReadOnlySpan{float}, ReadOnlySpan{ushort}, bool, bool)"/> gives.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static (float X0W0, float X0W1, float X1W0, float X1W1) Dot2x2(ReadOnlySpan<float> x0, ReadOnlySpan<float> x1,
        ReadOnlySpan<ushort> w0, ReadOnlySpan<ushort> w1, bool bf16, bool prescaled = false)
    {
        if (Wide(x0.Length)) return Dot2x2_512(x0, x1, default, w0, default, w1, bf16 ? WeightKind.BF16 : WeightKind.F16);
        if (!Vector256.IsHardwareAccelerated)
            return (Dot(x0, w0, bf16), Dot(x0, w1, bf16), Dot(x1, w0, bf16), Dot(x1, w1, bf16));
        return bf16 ? Dot2x2<Bf16Pairs>(x0, x1, w0, w1)
            : prescaled ? Dot2x2<F16PrescaledPairs>(x0, x1, w0, w1) : Dot2x2<F16Pairs>(x0, x1, w0, w1);
    }

    /// <summary>The Vector256 two-by-two block in the single-row Dot's order. Dot keeps four accumulators per product:
    /// two over the first half of each 32-value block (its 16 values widen to one even and one odd vector) and two over
    /// the second half, summed as (a0 + a1) + (a2 + a3). All sixteen of a two-by-two block's would fill AVX2's 16
    /// registers before a weight or an activation is loaded, so the block goes over the rows twice, once per half:
    /// eight accumulators and one widened chunk at a time. Each accumulator still sees its values in Dot's order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static (float, float, float, float) Dot2x2<T>(ReadOnlySpan<float> x0, ReadOnlySpan<float> x1,
        ReadOnlySpan<ushort> w0, ReadOnlySpan<ushort> w1) where T : struct, IPairWidening
    {
        int n = x0.Length, blocks = n & ~31;
        ref float xr0 = ref MemoryMarshal.GetReference(x0);
        ref float xr1 = ref MemoryMarshal.GetReference(x1);
        ref ushort wr0 = ref MemoryMarshal.GetReference(w0);
        ref ushort wr1 = ref MemoryMarshal.GetReference(w1);
        var first = HalfBlocks2x2<T>(ref xr0, ref xr1, ref wr0, ref wr1, 0, blocks);
        var second = HalfBlocks2x2<T>(ref xr0, ref xr1, ref wr0, ref wr1, 16, blocks);
        return Finish2x2<T>(first, second, x0, x1, w0, w1, blocks);
    }

    /// <summary>The end of a two-by-two block in Dot's order: each product's two halves' accumulators summed, then the
    /// values after the last whole step added one by one.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (float, float, float, float) Finish2x2<T>(
        (Vector256<float> X0W0, Vector256<float> X0W1, Vector256<float> X1W0, Vector256<float> X1W1) first,
        (Vector256<float> X0W0, Vector256<float> X0W1, Vector256<float> X1W0, Vector256<float> X1W1) second,
        ReadOnlySpan<float> x0, ReadOnlySpan<float> x1, ReadOnlySpan<ushort> w0, ReadOnlySpan<ushort> w1, int blocks)
        where T : struct, IPairWidening
    {
        float s00 = Vector256.Sum(first.X0W0 + second.X0W0), s01 = Vector256.Sum(first.X0W1 + second.X0W1);
        float s10 = Vector256.Sum(first.X1W0 + second.X1W0), s11 = Vector256.Sum(first.X1W1 + second.X1W1);
        for (int i = blocks; i < x0.Length; i++)
        {
            float p = T.ToSingle(w0[i]), q = T.ToSingle(w1[i]);
            s00 += x0[i] * p; s01 += x0[i] * q;
            s10 += x1[i] * p; s11 += x1[i] * q;
        }
        return (s00, s01, s10, s11);
    }

    /// <summary>One half (values half to half + 16 of every 32-value block below blocks) of the two-by-two block: per
    /// product, the sum of its two accumulators over that half. One weight row's chunk is widened at a time, and the
    /// activations are read where they are used, so eight accumulators, two widened vectors and the widening's constants
    /// are what the registers hold.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<float> X0W0, Vector256<float> X0W1, Vector256<float> X1W0, Vector256<float> X1W1)
        HalfBlocks2x2<T>(ref float xr0, ref float xr1, ref ushort wr0, ref ushort wr1, int half, int blocks)
        where T : struct, IPairWidening
    {
        Vector256<float> a0 = default, a1 = default, b0 = default, b1 = default;
        Vector256<float> c0 = default, c1 = default, d0 = default, d1 = default;
        var mask = T.Mask;
        var scale = T.Scale;
        for (nuint at = (nuint)half; at < (nuint)blocks; at += 32)
        {
            var (u0, u1) = T.Widen(Vector256.LoadUnsafe(ref wr0, at), mask, scale);
            a0 = Fmadd(Vector256.LoadUnsafe(ref xr0, at), u0, a0);
            c0 = Fmadd(Vector256.LoadUnsafe(ref xr1, at), u0, c0);
            a1 = Fmadd(Vector256.LoadUnsafe(ref xr0, at + 8), u1, a1);
            c1 = Fmadd(Vector256.LoadUnsafe(ref xr1, at + 8), u1, c1);
            (u0, u1) = T.Widen(Vector256.LoadUnsafe(ref wr1, at), mask, scale);
            b0 = Fmadd(Vector256.LoadUnsafe(ref xr0, at), u0, b0);
            d0 = Fmadd(Vector256.LoadUnsafe(ref xr1, at), u0, d0);
            b1 = Fmadd(Vector256.LoadUnsafe(ref xr0, at + 8), u1, b1);
            d1 = Fmadd(Vector256.LoadUnsafe(ref xr1, at + 8), u1, d1);
        }
        return (a0 + a1, b0 + b1, c0 + c1, d0 + d1);
    }

    /// <summary>Whether a GEMM over 16-bit weight rows may widen a tile of rows once (<see cref="WidenPairs"/>) and
    /// meet its activation rows three at a time with <see cref="Dot3x2Widened"/>, then two with <see cref="Dot2x2Widened"/>:
    /// the Vector256 order with AVX2 and FMA.</summary>
    public static bool WidensTiles(int n) => Vector256.IsHardwareAccelerated && Fma.IsSupported && !Wide(n);

    /// <summary>An f16 or bf16 row widened as the two-by-two block widens it, each 16-value chunk of the 32-value steps
    /// to its even-lane vector then its odd-lane vector (f16 scaled for a prescaled activation or not, as asked); the
    /// values after the last whole step are left out (the products take them from the row itself). For the prefill GEMM,
    /// which widened every chunk once per pair of activation rows: now once per tile.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void WidenPairs(ReadOnlySpan<ushort> w, Span<float> dst, bool bf16, bool prescaled)
    {
        if (bf16) WidenPairs<Bf16Pairs>(w, dst);
        else if (prescaled) WidenPairs<F16PrescaledPairs>(w, dst);
        else WidenPairs<F16Pairs>(w, dst);
    }

    private static void WidenPairs<T>(ReadOnlySpan<ushort> w, Span<float> dst) where T : struct, IPairWidening
    {
        int blocks = w.Length & ~31;
        if (dst.Length < blocks) throw new ArgumentException("the destination is shorter than the row's whole steps", nameof(dst));
        ref ushort wr = ref MemoryMarshal.GetReference(w);
        ref float d = ref MemoryMarshal.GetReference(dst);
        var mask = T.Mask;
        var scale = T.Scale;
        for (nuint at = 0; at < (nuint)blocks; at += 16)
        {
            var (even, odd) = T.Widen(Vector256.LoadUnsafe(ref wr, at), mask, scale);
            even.StoreUnsafe(ref d, at);
            odd.StoreUnsafe(ref d, at + 8);
        }
    }

    /// <summary>The two-by-two block over two weight rows widened by <see cref="WidenPairs"/> (wf0, wf1; w0 and w1 the
    /// rows themselves, for the values after the whole steps): the same multiply-adds as the 16-bit
    /// <see cref="Dot2x2(ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{ushort}, ReadOnlySpan{ushort}, bool, bool)"/>
    /// on the same values in the same order, so every product is bitwise what Dot gives, with loads where the widening
    /// was.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static (float X0W0, float X0W1, float X1W0, float X1W1) Dot2x2Widened(ReadOnlySpan<float> x0, ReadOnlySpan<float> x1,
        ReadOnlySpan<float> wf0, ReadOnlySpan<float> wf1, ReadOnlySpan<ushort> w0, ReadOnlySpan<ushort> w1, bool bf16)
    {
        int n = x0.Length, blocks = n & ~31;
        if (x1.Length != n || w0.Length != n || w1.Length != n || wf0.Length < blocks || wf1.Length < blocks)
            throw new ArgumentException("the rows' lengths differ");
        ref float xr0 = ref MemoryMarshal.GetReference(x0);
        ref float xr1 = ref MemoryMarshal.GetReference(x1);
        ref float wr0 = ref MemoryMarshal.GetReference(wf0);
        ref float wr1 = ref MemoryMarshal.GetReference(wf1);
        var first = WidenedHalfBlocks2x2(ref xr0, ref xr1, ref wr0, ref wr1, 0, blocks);
        var second = WidenedHalfBlocks2x2(ref xr0, ref xr1, ref wr0, ref wr1, 16, blocks);
        // The tail converts the 16-bit values themselves (the prescaled and plain f16 tails are the same: the activation
        // after the whole steps is never scaled).
        return bf16 ? Finish2x2<Bf16Pairs>(first, second, x0, x1, w0, w1, blocks)
            : Finish2x2<F16Pairs>(first, second, x0, x1, w0, w1, blocks);
    }

    /// <summary>Three activation rows against two weight rows widened by <see cref="WidenPairs"/> (wf0, wf1; w0 and w1 the
    /// rows themselves, for the values after the whole steps), into dst: x0.w0, x0.w1, x1.w0, x1.w1, x2.w0, x2.w1. Over
    /// the rows twice, once per half of each 32-value step as the two-by-two block goes, so a pass holds twelve
    /// accumulators, two weight vectors and one activation vector in AVX2's 16 registers: 5 loads for 6 multiply-adds
    /// against the two-by-two block's 4 for 4. Every product is bitwise what Dot gives.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Dot3x2Widened(ReadOnlySpan<float> x0, ReadOnlySpan<float> x1, ReadOnlySpan<float> x2,
        ReadOnlySpan<float> wf0, ReadOnlySpan<float> wf1, ReadOnlySpan<ushort> w0, ReadOnlySpan<ushort> w1, bool bf16,
        Span<float> dst)
    {
        int n = x0.Length, blocks = n & ~31;
        if (x1.Length != n || x2.Length != n || w0.Length != n || w1.Length != n || wf0.Length < blocks
            || wf1.Length < blocks || dst.Length < 6)
            throw new ArgumentException("the rows' lengths differ, or fewer than six outputs");
        ref float xr0 = ref MemoryMarshal.GetReference(x0);
        ref float xr1 = ref MemoryMarshal.GetReference(x1);
        ref float xr2 = ref MemoryMarshal.GetReference(x2);
        ref float wr0 = ref MemoryMarshal.GetReference(wf0);
        ref float wr1 = ref MemoryMarshal.GetReference(wf1);
        var first = WidenedHalfBlocks3x2(ref xr0, ref xr1, ref xr2, ref wr0, ref wr1, 0, blocks);
        var second = WidenedHalfBlocks3x2(ref xr0, ref xr1, ref xr2, ref wr0, ref wr1, 16, blocks);
        dst[0] = Vector256.Sum(first.X0W0 + second.X0W0); dst[1] = Vector256.Sum(first.X0W1 + second.X0W1);
        dst[2] = Vector256.Sum(first.X1W0 + second.X1W0); dst[3] = Vector256.Sum(first.X1W1 + second.X1W1);
        dst[4] = Vector256.Sum(first.X2W0 + second.X2W0); dst[5] = Vector256.Sum(first.X2W1 + second.X2W1);
        for (int i = blocks; i < n; i++)
        {
            // The activation after the whole steps is never scaled, so the prescaled and plain f16 tails are the same.
            float p = bf16 ? Bf16Pairs.ToSingle(w0[i]) : F16Pairs.ToSingle(w0[i]);
            float q = bf16 ? Bf16Pairs.ToSingle(w1[i]) : F16Pairs.ToSingle(w1[i]);
            dst[0] += x0[i] * p; dst[1] += x0[i] * q;
            dst[2] += x1[i] * p; dst[3] += x1[i] * q;
            dst[4] += x2[i] * p; dst[5] += x2[i] * q;
        }
    }

    /// <summary>One half of <see cref="Dot3x2Widened"/>'s steps (as <see cref="HalfBlocks2x2"/>): per product, the sum of
    /// its two accumulators over that half. Letter: the product (a x0.w0, b x0.w1, c x1.w0, d x1.w1, e x2.w0, f x2.w1);
    /// digit: the accumulator.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<float> X0W0, Vector256<float> X0W1, Vector256<float> X1W0, Vector256<float> X1W1,
        Vector256<float> X2W0, Vector256<float> X2W1)
        WidenedHalfBlocks3x2(ref float xr0, ref float xr1, ref float xr2, ref float wr0, ref float wr1, int half, int blocks)
    {
        Vector256<float> a0 = default, a1 = default, b0 = default, b1 = default, c0 = default, c1 = default;
        Vector256<float> d0 = default, d1 = default, e0 = default, e1 = default, f0 = default, f1 = default;
        for (nuint at = (nuint)half; at < (nuint)blocks; at += 32)
        {
            var u = Vector256.LoadUnsafe(ref wr0, at);
            var v = Vector256.LoadUnsafe(ref wr1, at);
            var x = Vector256.LoadUnsafe(ref xr0, at); a0 = Fmadd(x, u, a0); b0 = Fmadd(x, v, b0);
            x = Vector256.LoadUnsafe(ref xr1, at); c0 = Fmadd(x, u, c0); d0 = Fmadd(x, v, d0);
            x = Vector256.LoadUnsafe(ref xr2, at); e0 = Fmadd(x, u, e0); f0 = Fmadd(x, v, f0);
            u = Vector256.LoadUnsafe(ref wr0, at + 8);
            v = Vector256.LoadUnsafe(ref wr1, at + 8);
            x = Vector256.LoadUnsafe(ref xr0, at + 8); a1 = Fmadd(x, u, a1); b1 = Fmadd(x, v, b1);
            x = Vector256.LoadUnsafe(ref xr1, at + 8); c1 = Fmadd(x, u, c1); d1 = Fmadd(x, v, d1);
            x = Vector256.LoadUnsafe(ref xr2, at + 8); e1 = Fmadd(x, u, e1); f1 = Fmadd(x, v, f1);
        }
        return (a0 + a1, b0 + b1, c0 + c1, d0 + d1, e0 + e1, f0 + f1);
    }

    /// <summary><see cref="HalfBlocks2x2"/> over widened rows: each widened vector loaded where the widening was.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<float> X0W0, Vector256<float> X0W1, Vector256<float> X1W0, Vector256<float> X1W1)
        WidenedHalfBlocks2x2(ref float xr0, ref float xr1, ref float wr0, ref float wr1, int half, int blocks)
    {
        Vector256<float> a0 = default, a1 = default, b0 = default, b1 = default;
        Vector256<float> c0 = default, c1 = default, d0 = default, d1 = default;
        for (nuint at = (nuint)half; at < (nuint)blocks; at += 32)
        {
            var u0 = Vector256.LoadUnsafe(ref wr0, at);
            var u1 = Vector256.LoadUnsafe(ref wr0, at + 8);
            a0 = Fmadd(Vector256.LoadUnsafe(ref xr0, at), u0, a0);
            c0 = Fmadd(Vector256.LoadUnsafe(ref xr1, at), u0, c0);
            a1 = Fmadd(Vector256.LoadUnsafe(ref xr0, at + 8), u1, a1);
            c1 = Fmadd(Vector256.LoadUnsafe(ref xr1, at + 8), u1, c1);
            u0 = Vector256.LoadUnsafe(ref wr1, at);
            u1 = Vector256.LoadUnsafe(ref wr1, at + 8);
            b0 = Fmadd(Vector256.LoadUnsafe(ref xr0, at), u0, b0);
            d0 = Fmadd(Vector256.LoadUnsafe(ref xr1, at), u0, d0);
            b1 = Fmadd(Vector256.LoadUnsafe(ref xr0, at + 8), u1, b1);
            d1 = Fmadd(Vector256.LoadUnsafe(ref xr1, at + 8), u1, d1);
        }
        return (a0 + a1, b0 + b1, c0 + c1, d0 + d1);
    }

    /// <summary>How a 16-bit format's weights widen, pair by pair, into even- and odd-indexed f32 lanes: one type per
    /// format, so each product's loop is compiled for its format (a type argument, not a flag tested in the loop). The
    /// loops read Mask and Scale once, before they start (the JIT does not hoist the vector constants itself).</summary>
    private interface IPairWidening
    {
        static abstract Vector256<int> Mask { get; }
        static abstract Vector256<float> Scale { get; }
        static abstract (Vector256<float> Even, Vector256<float> Odd) Widen(Vector256<ushort> v, Vector256<int> mask,
            Vector256<float> scale);
        static abstract float ToSingle(ushort bits);
    }

    private readonly struct F16Pairs : IPairWidening
    {
        public static Vector256<int> Mask => Vector256.Create(unchecked((int)0x8FFFE000));
        public static Vector256<float> Scale => Vector256.Create(HalfRescale);
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static (Vector256<float> Even, Vector256<float> Odd) Widen(Vector256<ushort> v, Vector256<int> mask,
            Vector256<float> scale) => WidenF16(v, mask, scale);
        public static float ToSingle(ushort bits) => Models.FloatBits.FromHalf(bits);
    }

    /// <summary>f16 against an activation already multiplied by 2^112 (<see cref="ToPairOrder"/>): no multiply.</summary>
    private readonly struct F16PrescaledPairs : IPairWidening
    {
        public static Vector256<int> Mask => F16Pairs.Mask;
        public static Vector256<float> Scale => default;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static (Vector256<float> Even, Vector256<float> Odd) Widen(Vector256<ushort> v, Vector256<int> mask,
            Vector256<float> scale)
        {
            var pairs = v.AsInt32();
            var even = Vector256.ShiftRightArithmetic(Vector256.ShiftLeft(pairs, 16), 3) & mask;
            return (even.AsSingle(), (Vector256.ShiftRightArithmetic(pairs, 3) & mask).AsSingle());
        }
        public static float ToSingle(ushort bits) => Models.FloatBits.FromHalf(bits);
    }

    private readonly struct Bf16Pairs : IPairWidening
    {
        public static Vector256<int> Mask => Vector256.Create(unchecked((int)0xFFFF0000));
        public static Vector256<float> Scale => default;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static (Vector256<float> Even, Vector256<float> Odd) Widen(Vector256<ushort> v, Vector256<int> mask,
            Vector256<float> scale)
        {
            var pairs = v.AsInt32();
            return (Vector256.ShiftLeft(pairs, 16).AsSingle(), (pairs & mask).AsSingle());
        }
        public static float ToSingle(ushort bits) => Models.FloatBits.FromBFloat16(bits);
    }

    /// <summary>16 bf16 values (8 pairs) to their even- and odd-indexed f32 vectors: a bf16 is the top half of an f32, so
    /// the even one is the pair shifted up and the odd one the pair with its low half cleared.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static (Vector256<float> Even, Vector256<float> Odd) WidenBf16(Vector256<ushort> v)
    {
        var pairs = v.AsUInt32();
        return (Vector256.ShiftLeft(pairs, 16).AsSingle(), (pairs & Vector256.Create(0xFFFF0000u)).AsSingle());
    }

    /// <summary>16 f16 values (8 pairs) to their even- and odd-indexed f32 vectors, exact for normal and subnormal halves.
    /// With the half in the pair's top 16 bits, an arithmetic shift right by 3 puts its exponent and mantissa where an
    /// f32's are (copying the sign into the bits above, which the mask clears, and keeping it in bit 31); the result, read
    /// as an f32, is the half's value times 2^-112, so one multiply by 2^112 finishes it (and makes subnormal halves,
    /// which land on f32 subnormals, normal). Four operations per eight values, and no widening shuffle: the odd values
    /// are already in the top halves, and the even ones get there with one shift left.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static (Vector256<float> Even, Vector256<float> Odd) WidenF16(Vector256<ushort> v) =>
        WidenF16(v, F16Pairs.Mask, F16Pairs.Scale);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<float> Even, Vector256<float> Odd) WidenF16(Vector256<ushort> v, Vector256<int> mask,
        Vector256<float> scale)
    {
        var pairs = v.AsInt32();
        var even = Vector256.ShiftRightArithmetic(Vector256.ShiftLeft(pairs, 16), 3) & mask;
        var odd = Vector256.ShiftRightArithmetic(pairs, 3) & mask;
        return (even.AsSingle() * scale, odd.AsSingle() * scale);
    }

    /// <summary>x . w for an f16 or bf16 row w, with x in pair order (<see cref="ToPairOrder"/>; prescaled: what it
    /// returned).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Dot(ReadOnlySpan<float> x, ReadOnlySpan<ushort> w, bool bf16, bool prescaled = false)
    {
        if (Wide(x.Length)) return Dot512(x, w, bf16);
        return bf16 ? Dot<Bf16Pairs>(x, w) : prescaled ? Dot<F16PrescaledPairs>(x, w) : Dot<F16Pairs>(x, w);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Dot<T>(ReadOnlySpan<float> x, ReadOnlySpan<ushort> w) where T : struct, IPairWidening
    {
        int n = x.Length, i = 0;
        float sum = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            ref float xr = ref MemoryMarshal.GetReference(x);
            ref ushort wr = ref MemoryMarshal.GetReference(w);
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            var mask = T.Mask;
            var scale = T.Scale;
            for (; i <= n - 32; i += 32)
            {
                var (f0, f1) = T.Widen(Vector256.LoadUnsafe(ref wr, (nuint)i), mask, scale);
                var (f2, f3) = T.Widen(Vector256.LoadUnsafe(ref wr, (nuint)i + 16), mask, scale);
                a0 = Fmadd(Vector256.LoadUnsafe(ref xr, (nuint)i), f0, a0);
                a1 = Fmadd(Vector256.LoadUnsafe(ref xr, (nuint)i + 8), f1, a1);
                a2 = Fmadd(Vector256.LoadUnsafe(ref xr, (nuint)i + 16), f2, a2);
                a3 = Fmadd(Vector256.LoadUnsafe(ref xr, (nuint)i + 24), f3, a3);
            }
            sum = Vector256.Sum((a0 + a1) + (a2 + a3));
        }
        for (; i < n; i++) sum += x[i] * T.ToSingle(w[i]);
        return sum;
    }
}
