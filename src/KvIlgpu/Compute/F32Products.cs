using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace KvIlgpu.Compute;

/// <summary>f32 activation rows against f32 weight rows in the Vector256 order, the one every f32 product takes outside
/// the opt-in wide order (<see cref="SimdMath.UseVector512"/>): two 8-lane accumulators per product, the 8-value chunks
/// of the row going to them in turn (chunk c into accumulator c mod 2), summed as <c>Vector256.Sum(a0 + a1)</c>, then
/// the values after the last whole chunk one by one. Every block below keeps each of its products in exactly that order,
/// so it gives bitwise what <see cref="Dot"/> gives for each: the prefill GEMM and batched decode give a row what decode
/// alone would.
/// <para>Two accumulators a product is the compromise between the two uses. Decode streams one weight row at a time from
/// memory and wants independent chains: with one accumulator it measured about a fifth slower than with two or four
/// (perf weight-types, f32 decode). The GEMM wants small blocks' accumulators to fit AVX2's 16 vector registers: with
/// four a product (the earlier order) the two-by-two block needed 16 and spilled four to the stack on every step, while
/// with two the three-by-two block holds its 12 beside two weight chunks and one activation chunk, 5 loads for 6 FMAs,
/// and the four-by-three block (<see cref="Dot4x3"/>, the GEMM's from four activation rows) goes over its rows twice,
/// once per accumulator, 12 at a time, 7 loads for 12 FMAs. With AVX-512 a 512-bit register holds a product's two
/// accumulators side by side (lanes 0-7 the even chunks', 8-15 the odd ones'), so one register a product over 16-value
/// steps is the same order, and the four-by-three block (<see cref="Dot4x3Wide"/>) keeps 12 of them in AVX-512's 32
/// registers in one pass.</para></summary>
internal static class F32Products
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Fmadd(Vector256<float> a, Vector256<float> b, Vector256<float> acc) =>
        Fma.IsSupported ? Fma.MultiplyAdd(a, b, acc) : acc + a * b;

    /// <summary>Whether the vector order runs; without Vector256 hardware every block is its products' Dot calls, and Dot
    /// is TensorPrimitives.Dot.</summary>
    private static bool Vectors => Vector256.IsHardwareAccelerated;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Load(ref float row, int i) => Vector256.LoadUnsafe(ref row, (nuint)i);

    /// <summary>x . w.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Dot(ReadOnlySpan<float> x, ReadOnlySpan<float> w)
    {
        if (!Vectors) return TensorPrimitives.Dot(x, w);
        int n = x.Length, i = 0;
        if (w.Length < n) throw new ArgumentException("the weight row is shorter than the activation row", nameof(w));
        ref float xr = ref MemoryMarshal.GetReference(x);
        ref float wr = ref MemoryMarshal.GetReference(w);
        Vector256<float> a0 = default, a1 = default;
        for (; i <= n - 16; i += 16)
        {
            a0 = Fmadd(Load(ref xr, i), Load(ref wr, i), a0);
            a1 = Fmadd(Load(ref xr, i + 8), Load(ref wr, i + 8), a1);
        }
        if (i <= n - 8) { a0 = Fmadd(Load(ref xr, i), Load(ref wr, i), a0); i += 8; }
        float s = Vector256.Sum(a0 + a1);
        for (; i < n; i++) s += x[i] * w[i];
        return s;
    }

    /// <summary>Two activation rows against one weight row: (x0 . w, x1 . w), each weight chunk loaded once.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static (float, float) Dot2(ReadOnlySpan<float> x0, ReadOnlySpan<float> x1, ReadOnlySpan<float> w)
    {
        int n = x0.Length, i = 0;
        if (!Vectors) return (Dot(x0, w), Dot(x1, w));
        if (x1.Length < n || w.Length < n) throw new ArgumentException("rows of different lengths");
        ref float xr0 = ref MemoryMarshal.GetReference(x0);
        ref float xr1 = ref MemoryMarshal.GetReference(x1);
        ref float wr = ref MemoryMarshal.GetReference(w);
        Vector256<float> a0 = default, a1 = default, b0 = default, b1 = default;
        for (; i <= n - 16; i += 16)
        {
            var u = Load(ref wr, i);
            a0 = Fmadd(Load(ref xr0, i), u, a0); b0 = Fmadd(Load(ref xr1, i), u, b0);
            u = Load(ref wr, i + 8);
            a1 = Fmadd(Load(ref xr0, i + 8), u, a1); b1 = Fmadd(Load(ref xr1, i + 8), u, b1);
        }
        if (i <= n - 8)
        {
            var u = Load(ref wr, i);
            a0 = Fmadd(Load(ref xr0, i), u, a0); b0 = Fmadd(Load(ref xr1, i), u, b0);
            i += 8;
        }
        float s0 = Vector256.Sum(a0 + a1), s1 = Vector256.Sum(b0 + b1);
        for (; i < n; i++) { s0 += x0[i] * w[i]; s1 += x1[i] * w[i]; }
        return (s0, s1);
    }

    /// <summary>Two activation rows against two weight rows: (x0 . w0, x0 . w1, x1 . w0, x1 . w1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static (float X0W0, float X0W1, float X1W0, float X1W1) Dot2x2(ReadOnlySpan<float> x0, ReadOnlySpan<float> x1,
        ReadOnlySpan<float> w0, ReadOnlySpan<float> w1)
    {
        int n = x0.Length, i = 0;
        if (!Vectors) return (Dot(x0, w0), Dot(x0, w1), Dot(x1, w0), Dot(x1, w1));
        if (x1.Length < n || w0.Length < n || w1.Length < n) throw new ArgumentException("rows of different lengths");
        ref float xr0 = ref MemoryMarshal.GetReference(x0);
        ref float xr1 = ref MemoryMarshal.GetReference(x1);
        ref float wr0 = ref MemoryMarshal.GetReference(w0);
        ref float wr1 = ref MemoryMarshal.GetReference(w1);
        // Letter: the product (a x0.w0, b x0.w1, c x1.w0, d x1.w1); digit: the accumulator.
        Vector256<float> a0 = default, b0 = default, c0 = default, d0 = default, a1 = default, b1 = default, c1 = default, d1 = default;
        for (; i <= n - 16; i += 16)
        {
            var u = Load(ref wr0, i); var v = Load(ref wr1, i);
            var x = Load(ref xr0, i); a0 = Fmadd(x, u, a0); b0 = Fmadd(x, v, b0);
            x = Load(ref xr1, i); c0 = Fmadd(x, u, c0); d0 = Fmadd(x, v, d0);
            u = Load(ref wr0, i + 8); v = Load(ref wr1, i + 8);
            x = Load(ref xr0, i + 8); a1 = Fmadd(x, u, a1); b1 = Fmadd(x, v, b1);
            x = Load(ref xr1, i + 8); c1 = Fmadd(x, u, c1); d1 = Fmadd(x, v, d1);
        }
        if (i <= n - 8)
        {
            var u = Load(ref wr0, i); var v = Load(ref wr1, i);
            var x = Load(ref xr0, i); a0 = Fmadd(x, u, a0); b0 = Fmadd(x, v, b0);
            x = Load(ref xr1, i); c0 = Fmadd(x, u, c0); d0 = Fmadd(x, v, d0);
            i += 8;
        }
        float s00 = Vector256.Sum(a0 + a1), s01 = Vector256.Sum(b0 + b1), s10 = Vector256.Sum(c0 + c1), s11 = Vector256.Sum(d0 + d1);
        for (; i < n; i++)
        {
            s00 += x0[i] * w0[i]; s01 += x0[i] * w1[i];
            s10 += x1[i] * w0[i]; s11 += x1[i] * w1[i];
        }
        return (s00, s01, s10, s11);
    }

    /// <summary>Three activation rows against two weight rows, into dst: x0.w0, x0.w1, x1.w0, x1.w1, x2.w0, x2.w1. The
    /// prefill GEMM's block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Dot3x2(ReadOnlySpan<float> x0, ReadOnlySpan<float> x1, ReadOnlySpan<float> x2, ReadOnlySpan<float> w0,
        ReadOnlySpan<float> w1, Span<float> dst)
    {
        int n = x0.Length, i = 0;
        if (!Vectors)
        {
            dst[0] = Dot(x0, w0); dst[1] = Dot(x0, w1); dst[2] = Dot(x1, w0);
            dst[3] = Dot(x1, w1); dst[4] = Dot(x2, w0); dst[5] = Dot(x2, w1);
            return;
        }
        if (x1.Length < n || x2.Length < n || w0.Length < n || w1.Length < n || dst.Length < 6)
            throw new ArgumentException("rows of different lengths, or fewer than six outputs");
        ref float xr0 = ref MemoryMarshal.GetReference(x0);
        ref float xr1 = ref MemoryMarshal.GetReference(x1);
        ref float xr2 = ref MemoryMarshal.GetReference(x2);
        ref float wr0 = ref MemoryMarshal.GetReference(w0);
        ref float wr1 = ref MemoryMarshal.GetReference(w1);
        // Letter: the activation row; digit: the weight row; Odd: the second accumulator (the odd chunks).
        Vector256<float> a0 = default, a1 = default, b0 = default, b1 = default, c0 = default, c1 = default;
        Vector256<float> a0Odd = default, a1Odd = default, b0Odd = default, b1Odd = default, c0Odd = default, c1Odd = default;
        for (; i <= n - 16; i += 16)
        {
            var u = Load(ref wr0, i); var v = Load(ref wr1, i);
            var x = Load(ref xr0, i); a0 = Fmadd(x, u, a0); a1 = Fmadd(x, v, a1);
            x = Load(ref xr1, i); b0 = Fmadd(x, u, b0); b1 = Fmadd(x, v, b1);
            x = Load(ref xr2, i); c0 = Fmadd(x, u, c0); c1 = Fmadd(x, v, c1);
            u = Load(ref wr0, i + 8); v = Load(ref wr1, i + 8);
            x = Load(ref xr0, i + 8); a0Odd = Fmadd(x, u, a0Odd); a1Odd = Fmadd(x, v, a1Odd);
            x = Load(ref xr1, i + 8); b0Odd = Fmadd(x, u, b0Odd); b1Odd = Fmadd(x, v, b1Odd);
            x = Load(ref xr2, i + 8); c0Odd = Fmadd(x, u, c0Odd); c1Odd = Fmadd(x, v, c1Odd);
        }
        if (i <= n - 8)
        {
            var u = Load(ref wr0, i); var v = Load(ref wr1, i);
            var x = Load(ref xr0, i); a0 = Fmadd(x, u, a0); a1 = Fmadd(x, v, a1);
            x = Load(ref xr1, i); b0 = Fmadd(x, u, b0); b1 = Fmadd(x, v, b1);
            x = Load(ref xr2, i); c0 = Fmadd(x, u, c0); c1 = Fmadd(x, v, c1);
            i += 8;
        }
        float s00 = Vector256.Sum(a0 + a0Odd), s01 = Vector256.Sum(a1 + a1Odd), s10 = Vector256.Sum(b0 + b0Odd);
        float s11 = Vector256.Sum(b1 + b1Odd), s20 = Vector256.Sum(c0 + c0Odd), s21 = Vector256.Sum(c1 + c1Odd);
        for (; i < n; i++)
        {
            s00 += x0[i] * w0[i]; s01 += x0[i] * w1[i];
            s10 += x1[i] * w0[i]; s11 += x1[i] * w1[i];
            s20 += x2[i] * w0[i]; s21 += x2[i] * w1[i];
        }
        dst[0] = s00; dst[1] = s01; dst[2] = s10; dst[3] = s11; dst[4] = s20; dst[5] = s21;
    }

    /// <summary>Four consecutive activation rows of k values against three consecutive weight rows on Vector256, into
    /// dst as <see cref="Dot4x3Wide"/> writes it, every product bitwise <see cref="Dot"/>'s: the rows are gone over twice,
    /// once for the even 8-value chunks (each product's first accumulator) and once for the odd ones (its second), so a
    /// pass holds 12 accumulators, three weight chunks and one activation chunk in AVX2's 16 registers: 7 loads for 12
    /// FMAs, against the three-by-two block's 5 for 6. The prefill GEMM's block on AVX2.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Dot4x3(ReadOnlySpan<float> x, ReadOnlySpan<float> w, int k, Span<float> dst)
    {
        if (BySingles4x3(x, w, k, dst)) return;
        ref float xr = ref MemoryMarshal.GetReference(x);
        ref float wr = ref MemoryMarshal.GetReference(w);
        var even = Chunks4x3(ref xr, ref wr, k, 0);
        var odd = Chunks4x3(ref xr, ref wr, k, 8);
        dst[0] = Vector256.Sum(even.A0 + odd.A0); dst[1] = Vector256.Sum(even.A1 + odd.A1); dst[2] = Vector256.Sum(even.A2 + odd.A2);
        dst[3] = Vector256.Sum(even.B0 + odd.B0); dst[4] = Vector256.Sum(even.B1 + odd.B1); dst[5] = Vector256.Sum(even.B2 + odd.B2);
        dst[6] = Vector256.Sum(even.C0 + odd.C0); dst[7] = Vector256.Sum(even.C1 + odd.C1); dst[8] = Vector256.Sum(even.C2 + odd.C2);
        dst[9] = Vector256.Sum(even.D0 + odd.D0); dst[10] = Vector256.Sum(even.D1 + odd.D1); dst[11] = Vector256.Sum(even.D2 + odd.D2);
        AddTail4x3(x, w, k, k & ~7, dst);
    }

    /// <summary>A four-by-three block's checks, and its products one Dot at a time where there is no vector hardware:
    /// returns whether that was done (so the block has nothing left to do).</summary>
    private static bool BySingles4x3(ReadOnlySpan<float> x, ReadOnlySpan<float> w, int k, Span<float> dst)
    {
        if (x.Length < 4 * k || w.Length < 3 * k || dst.Length < 12) throw new ArgumentException("a block or the output is too short");
        if (Vectors) return false;
        for (int r = 0; r < 4; r++)
            for (int j = 0; j < 3; j++) dst[3 * r + j] = Dot(x.Slice(r * k, k), w.Slice(j * k, k));
        return true;
    }

    /// <summary>A four-by-three block's values from `from` on (those after its last whole chunk), added one by one to its
    /// twelve sums, as Dot adds them.</summary>
    private static void AddTail4x3(ReadOnlySpan<float> x, ReadOnlySpan<float> w, int k, int from, Span<float> dst)
    {
        for (int i = from; i < k; i++)
            for (int r = 0; r < 4; r++)
            {
                float xv = x[r * k + i];
                dst[3 * r] += xv * w[i]; dst[3 * r + 1] += xv * w[k + i]; dst[3 * r + 2] += xv * w[2 * k + i];
            }
    }

    /// <summary>One pass of <see cref="Dot4x3"/>: the 8-value chunks at half, half + 16, ... of every row, into one
    /// accumulator per product. The accumulators come back in a struct: kept in a stackalloc'd span instead (zeroed by a
    /// helper call, then reloaded), the block ran at about two thirds of this speed in a throwaway timing of the block
    /// alone, in L1, when it was written.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Block4x3 Chunks4x3(ref float xr, ref float wr, int k, int half)
    {
        nuint s = (nuint)k;
        // Letter: the activation row; digit: the weight row.
        Vector256<float> a0 = default, a1 = default, a2 = default, b0 = default, b1 = default, b2 = default;
        Vector256<float> c0 = default, c1 = default, c2 = default, d0 = default, d1 = default, d2 = default;
        for (nuint at = (nuint)half; at + 8 <= s; at += 16)
        {
            var u = Vector256.LoadUnsafe(ref wr, at); var v = Vector256.LoadUnsafe(ref wr, at + s);
            var t = Vector256.LoadUnsafe(ref wr, at + 2 * s);
            var p = Vector256.LoadUnsafe(ref xr, at); a0 = Fmadd(p, u, a0); a1 = Fmadd(p, v, a1); a2 = Fmadd(p, t, a2);
            p = Vector256.LoadUnsafe(ref xr, at + s); b0 = Fmadd(p, u, b0); b1 = Fmadd(p, v, b1); b2 = Fmadd(p, t, b2);
            p = Vector256.LoadUnsafe(ref xr, at + 2 * s); c0 = Fmadd(p, u, c0); c1 = Fmadd(p, v, c1); c2 = Fmadd(p, t, c2);
            p = Vector256.LoadUnsafe(ref xr, at + 3 * s); d0 = Fmadd(p, u, d0); d1 = Fmadd(p, v, d1); d2 = Fmadd(p, t, d2);
        }
        return new Block4x3(a0, a1, a2, b0, b1, b2, c0, c1, c2, d0, d1, d2);
    }

    /// <summary>A four-by-three block's accumulators, one per product (letter: the activation row; digit: the weight row).</summary>
    private readonly record struct Block4x3(Vector256<float> A0, Vector256<float> A1, Vector256<float> A2,
        Vector256<float> B0, Vector256<float> B1, Vector256<float> B2, Vector256<float> C0, Vector256<float> C1,
        Vector256<float> C2, Vector256<float> D0, Vector256<float> D1, Vector256<float> D2);

    /// <summary>Whether the f32 GEMM takes <see cref="Dot4x3Wide"/>: on AVX-512 hardware, or where a test asks for it.</summary>
    public static bool Wide4x3 => ForceWide4x3 || (Vector512.IsHardwareAccelerated && Avx512F.IsSupported);

    /// <summary>Tests set this to run the AVX-512 GEMM's loops on a machine without AVX-512 (the runtime's software
    /// Vector512 then stands in: the same bits, slowly).</summary>
    internal static bool ForceWide4x3 { get; set; }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Fmadd(Vector512<float> a, Vector512<float> b, Vector512<float> acc) =>
#if NET9_0_OR_GREATER
        Vector512.FusedMultiplyAdd(a, b, acc); // fused in the software fallback too, so tests without AVX-512 check the bits
#else
        Avx512F.IsSupported ? Avx512F.FusedMultiplyAdd(a, b, acc) : acc + a * b;
#endif

    /// <summary>One product's 512-bit accumulator after an odd last 8-value chunk, which belongs to the low half's
    /// accumulator (chunk c into accumulator c mod 2, and the chunk before it was odd).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> LastChunk(Vector512<float> acc, Vector256<float> x, Vector256<float> w) =>
        acc.WithLower(Fmadd(x, w, acc.GetLower()));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Total(Vector512<float> acc) => Vector256.Sum(acc.GetLower() + acc.GetUpper());

    /// <summary>Four consecutive activation rows of k values (x holds at least 4k) against three consecutive weight rows of
    /// k values (w at least 3k) on Vector512, into dst[0..12] row by row: x0.w0, x0.w1, x0.w2, x1.w0, ... Each product is
    /// one 512-bit accumulator over 16-value steps, which is the Vector256 order's two accumulators side by side, so every
    /// result is bitwise <see cref="Dot"/>'s. 12 accumulators, three weight chunks and one activation chunk: 7 loads for 12
    /// FMAs of 16 lanes. The prefill GEMM's block where the CPU has AVX-512.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Dot4x3Wide(ReadOnlySpan<float> x, ReadOnlySpan<float> w, int k, Span<float> dst)
    {
        if (BySingles4x3(x, w, k, dst)) return;
        ref float xr = ref MemoryMarshal.GetReference(x);
        ref float wr = ref MemoryMarshal.GetReference(w);
        nuint s = (nuint)k;
        // Letter: the activation row; digit: the weight row.
        Vector512<float> a0 = default, a1 = default, a2 = default, b0 = default, b1 = default, b2 = default;
        Vector512<float> c0 = default, c1 = default, c2 = default, d0 = default, d1 = default, d2 = default;
        int i = 0;
        for (; i <= k - 16; i += 16)
        {
            nuint at = (nuint)i;
            var u = Vector512.LoadUnsafe(ref wr, at); var v = Vector512.LoadUnsafe(ref wr, at + s);
            var t = Vector512.LoadUnsafe(ref wr, at + 2 * s);
            var p = Vector512.LoadUnsafe(ref xr, at); a0 = Fmadd(p, u, a0); a1 = Fmadd(p, v, a1); a2 = Fmadd(p, t, a2);
            p = Vector512.LoadUnsafe(ref xr, at + s); b0 = Fmadd(p, u, b0); b1 = Fmadd(p, v, b1); b2 = Fmadd(p, t, b2);
            p = Vector512.LoadUnsafe(ref xr, at + 2 * s); c0 = Fmadd(p, u, c0); c1 = Fmadd(p, v, c1); c2 = Fmadd(p, t, c2);
            p = Vector512.LoadUnsafe(ref xr, at + 3 * s); d0 = Fmadd(p, u, d0); d1 = Fmadd(p, v, d1); d2 = Fmadd(p, t, d2);
        }
        if (i <= k - 8)
        {
            var u = Vector256.LoadUnsafe(ref wr, (nuint)i); var v = Vector256.LoadUnsafe(ref wr, (nuint)i + s);
            var t = Vector256.LoadUnsafe(ref wr, (nuint)i + 2 * s);
            var p = Vector256.LoadUnsafe(ref xr, (nuint)i);
            a0 = LastChunk(a0, p, u); a1 = LastChunk(a1, p, v); a2 = LastChunk(a2, p, t);
            p = Vector256.LoadUnsafe(ref xr, (nuint)i + s);
            b0 = LastChunk(b0, p, u); b1 = LastChunk(b1, p, v); b2 = LastChunk(b2, p, t);
            p = Vector256.LoadUnsafe(ref xr, (nuint)i + 2 * s);
            c0 = LastChunk(c0, p, u); c1 = LastChunk(c1, p, v); c2 = LastChunk(c2, p, t);
            p = Vector256.LoadUnsafe(ref xr, (nuint)i + 3 * s);
            d0 = LastChunk(d0, p, u); d1 = LastChunk(d1, p, v); d2 = LastChunk(d2, p, t);
            i += 8;
        }
        dst[0] = Total(a0); dst[1] = Total(a1); dst[2] = Total(a2);
        dst[3] = Total(b0); dst[4] = Total(b1); dst[5] = Total(b2);
        dst[6] = Total(c0); dst[7] = Total(c1); dst[8] = Total(c2);
        dst[9] = Total(d0); dst[10] = Total(d1); dst[11] = Total(d2);
        AddTail4x3(x, w, k, i, dst);
    }
}
