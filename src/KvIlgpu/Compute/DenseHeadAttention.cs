using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace KvIlgpu.Compute;

/// <summary>Attention of query heads over a dense run of cached rows (the managed backend's dense-cache path, which
/// prefill takes). One query (<see cref="Attend"/>): scores four keys at a time, a softmax, then the value sum with the
/// output held in registers, 64 features a pass. Four queries that share a KV head (<see cref="AttendFour"/>, what the
/// backend runs wherever it has four): scores two keys a pass and values 16 features a pass for all four, so each key
/// and value chunk is loaded once for the four; the 512-token prefill's attention of the perf model took about 1.6x
/// less time that way. The straightforward form (a dot-product call per key, a multiply-add call per value row) spent
/// most of a 512-token prefill's attention time in call overhead at head widths of 64; heads whose width is not a whole
/// number of 8s, and machines without Vector256, keep it.</summary>
internal static class DenseHeadAttention
{
    /// <summary>Whether heads of width d take the blocked path.</summary>
    public static bool Blocked(int d) => Vector256.IsHardwareAccelerated && Fma.IsSupported && d % 8 == 0;

    /// <summary>dst = softmax(scale q . k_t) . v over t in [0, len): key t at keys[t * stride], value t at
    /// values[t * stride]; scores is scratch of at least len.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Attend(ReadOnlySpan<float> q, ReadOnlySpan<float> keys, ReadOnlySpan<float> values, int stride, int len,
        float scale, Span<float> scores, Span<float> dst)
    {
        int d = q.Length;
        if (!Blocked(d))
        {
            for (int t = 0; t < len; t++) scores[t] = SimdMath.Dot(q, keys.Slice(t * stride, d)) * scale;
            SimdMath.SoftMax(scores[..len], scores[..len]);
            dst.Clear();
            for (int t = 0; t < len; t++)
                System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(values.Slice(t * stride, d), scores[t], dst, dst);
            return;
        }
        Scores(q, keys, stride, len, scale, scores);
        SimdMath.SoftMax(scores[..len], scores[..len]);
        ValueSum(scores, values, stride, len, dst);
    }

    /// <summary>Attention for up to four query heads over the same KV head's rows (a GQA group's heads of one row, or the
    /// same head of neighbouring rows): query i is at qs[queryAt[i]], attends to the first lens[i] rows, and writes
    /// dst[dstAt[i]..+d]. The scores of the four are taken together, two keys a pass, so each key chunk is loaded once for
    /// four queries instead of once for each (6 loads for 8 multiply-adds, against 5 for 4). Every query's numbers are
    /// what <see cref="Attend"/> gives it alone, bit for bit: its scores keep one accumulator over the head's width, its
    /// softmax is Attend's, and its value sum adds the same products in the same order (then, past its own length, rows
    /// weighed by zero, which add nothing but a zero's sign). keys and values start at the KV head's first row and hold
    /// the longest query's rows; scores is scratch of at least 4 x the longest length. Blocked widths only
    /// (<see cref="Blocked"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AttendFour(ReadOnlySpan<float> qs, ReadOnlySpan<int> queryAt, ReadOnlySpan<int> lens, int count,
        ReadOnlySpan<float> keys, ReadOnlySpan<float> values, int stride, int d, float scale, Span<float> scores,
        Span<float> dst, ReadOnlySpan<int> dstAt)
    {
        if (count is < 1 or > 4) throw new ArgumentOutOfRangeException(nameof(count), "one to four queries a block");
        if (!Blocked(d)) throw new ArgumentException($"head width {d} is not blocked", nameof(d));
        int longest = 0;
        for (int i = 0; i < count; i++)
        {
            if (lens[i] < 1) throw new ArgumentOutOfRangeException(nameof(lens), "a query attends to at least one row");
            if (dstAt[i] < 0 || dstAt[i] + d > dst.Length) throw new ArgumentOutOfRangeException(nameof(dstAt));
            longest = Math.Max(longest, lens[i]);
        }
        if (scores.Length < 4 * longest) throw new ArgumentException("scores is shorter than four times the longest length");
        // Missing queries repeat the first (their scores are computed and not used).
        int at0 = queryAt[0], at1 = queryAt[count > 1 ? 1 : 0], at2 = queryAt[count > 2 ? 2 : 0], at3 = queryAt[count > 3 ? 3 : 0];
        foreach (int at in (ReadOnlySpan<int>)[at0, at1, at2, at3])
            if (at < 0 || at + d > qs.Length) throw new ArgumentOutOfRangeException(nameof(queryAt));
        if ((longest - 1) * (long)stride + d > keys.Length || (longest - 1) * (long)stride + d > values.Length)
            throw new ArgumentException("keys or values hold fewer rows than the longest query attends to");
        ScoresFour(qs, at0, at1, at2, at3, keys, stride, longest, d, scale, scores);
        for (int i = 0; i < count; i++)
        {
            var own = scores.Slice(i * longest, lens[i]);
            SimdMath.SoftMax(own, own);
            // Past its own length a query weighs the rows by zero.
            scores.Slice(i * longest + lens[i], longest - lens[i]).Clear();
        }
        ValueSumFour(scores, values, stride, longest, d, count, dst, dstAt);
    }

    /// <summary>dst_i = sum_t p_i[t] v_t for four queries (p_i at p[i * len], zero past the query's own length), 16
    /// output features a pass: eight accumulators, each value row's two chunks loaded once for the four queries (6 loads
    /// for 8 multiply-adds, against 9 for 8 one query at a time). Each accumulator sums its products in t order, as
    /// <see cref="ValueSum"/> does.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ValueSumFour(ReadOnlySpan<float> p, ReadOnlySpan<float> values, int stride, int len, int d, int count,
        Span<float> dst, ReadOnlySpan<int> dstAt)
    {
        ref float vr = ref MemoryMarshal.GetReference(values);
        ref float p0 = ref MemoryMarshal.GetReference(p);
        ref float p1 = ref Unsafe.Add(ref p0, count > 1 ? len : 0);
        ref float p2 = ref Unsafe.Add(ref p0, count > 2 ? 2 * len : 0);
        ref float p3 = ref Unsafe.Add(ref p0, count > 3 ? 3 * len : 0);
        ref float dr = ref MemoryMarshal.GetReference(dst);
        for (int c = 0; c < d; c += 16)
        {
            bool two = c + 16 <= d;
            // Letter: the query; digit: the chunk.
            Vector256<float> a0 = default, a1 = default, b0 = default, b1 = default;
            Vector256<float> c0 = default, c1 = default, e0 = default, e1 = default;
            nuint at = (nuint)c;
            if (two)
                for (int t = 0; t < len; t++, at += (nuint)stride)
                {
                    var u = Vector256.LoadUnsafe(ref vr, at);
                    var v = Vector256.LoadUnsafe(ref vr, at + 8);
                    var w = Vector256.Create(Unsafe.Add(ref p0, t)); a0 = Fmadd(w, u, a0); a1 = Fmadd(w, v, a1);
                    w = Vector256.Create(Unsafe.Add(ref p1, t)); b0 = Fmadd(w, u, b0); b1 = Fmadd(w, v, b1);
                    w = Vector256.Create(Unsafe.Add(ref p2, t)); c0 = Fmadd(w, u, c0); c1 = Fmadd(w, v, c1);
                    w = Vector256.Create(Unsafe.Add(ref p3, t)); e0 = Fmadd(w, u, e0); e1 = Fmadd(w, v, e1);
                }
            else
                for (int t = 0; t < len; t++, at += (nuint)stride)
                {
                    var u = Vector256.LoadUnsafe(ref vr, at);
                    a0 = Fmadd(Vector256.Create(Unsafe.Add(ref p0, t)), u, a0);
                    b0 = Fmadd(Vector256.Create(Unsafe.Add(ref p1, t)), u, b0);
                    c0 = Fmadd(Vector256.Create(Unsafe.Add(ref p2, t)), u, c0);
                    e0 = Fmadd(Vector256.Create(Unsafe.Add(ref p3, t)), u, e0);
                }
            Store(ref dr, dstAt[0] + c, a0, a1, two);
            if (count > 1) Store(ref dr, dstAt[1] + c, b0, b1, two);
            if (count > 2) Store(ref dr, dstAt[2] + c, c0, c1, two);
            if (count > 3) Store(ref dr, dstAt[3] + c, e0, e1, two);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(ref float dst, int at, Vector256<float> x, Vector256<float> y, bool two)
    {
        x.StoreUnsafe(ref dst, (nuint)at);
        if (two) y.StoreUnsafe(ref dst, (nuint)at + 8);
    }

    /// <summary>scores[i * len + t] = scale q_i . k_t for four queries, two keys a pass: eight accumulators, two key chunks
    /// and one query chunk in registers.</summary>
    private static void ScoresFour(ReadOnlySpan<float> qs, int at0, int at1, int at2, int at3, ReadOnlySpan<float> keys,
        int stride, int len, int d, float scale, Span<float> scores)
    {
        ref float qr = ref MemoryMarshal.GetReference(qs);
        ref float q0 = ref Unsafe.Add(ref qr, at0), q1 = ref Unsafe.Add(ref qr, at1);
        ref float q2 = ref Unsafe.Add(ref qr, at2), q3 = ref Unsafe.Add(ref qr, at3);
        ref float kr = ref MemoryMarshal.GetReference(keys);
        ref float sr = ref MemoryMarshal.GetReference(scores);
        int t = 0;
        for (; t + 1 < len; t += 2)
        {
            nuint k0 = (nuint)(t * stride), k1 = k0 + (nuint)stride;
            // Letter: the query; digit: the key.
            Vector256<float> a0 = default, a1 = default, b0 = default, b1 = default;
            Vector256<float> c0 = default, c1 = default, e0 = default, e1 = default;
            for (nuint c = 0; c < (nuint)d; c += 8)
            {
                var u = Vector256.LoadUnsafe(ref kr, k0 + c);
                var v = Vector256.LoadUnsafe(ref kr, k1 + c);
                var x = Vector256.LoadUnsafe(ref q0, c); a0 = Fmadd(x, u, a0); a1 = Fmadd(x, v, a1);
                x = Vector256.LoadUnsafe(ref q1, c); b0 = Fmadd(x, u, b0); b1 = Fmadd(x, v, b1);
                x = Vector256.LoadUnsafe(ref q2, c); c0 = Fmadd(x, u, c0); c1 = Fmadd(x, v, c1);
                x = Vector256.LoadUnsafe(ref q3, c); e0 = Fmadd(x, u, e0); e1 = Fmadd(x, v, e1);
            }
            Unsafe.Add(ref sr, t) = Vector256.Sum(a0) * scale; Unsafe.Add(ref sr, t + 1) = Vector256.Sum(a1) * scale;
            Unsafe.Add(ref sr, len + t) = Vector256.Sum(b0) * scale; Unsafe.Add(ref sr, len + t + 1) = Vector256.Sum(b1) * scale;
            Unsafe.Add(ref sr, 2 * len + t) = Vector256.Sum(c0) * scale;
            Unsafe.Add(ref sr, 2 * len + t + 1) = Vector256.Sum(c1) * scale;
            Unsafe.Add(ref sr, 3 * len + t) = Vector256.Sum(e0) * scale;
            Unsafe.Add(ref sr, 3 * len + t + 1) = Vector256.Sum(e1) * scale;
        }
        if (t < len)
        {
            nuint k0 = (nuint)(t * stride);
            Vector256<float> a0 = default, b0 = default, c0 = default, e0 = default;
            for (nuint c = 0; c < (nuint)d; c += 8)
            {
                var u = Vector256.LoadUnsafe(ref kr, k0 + c);
                a0 = Fmadd(Vector256.LoadUnsafe(ref q0, c), u, a0);
                b0 = Fmadd(Vector256.LoadUnsafe(ref q1, c), u, b0);
                c0 = Fmadd(Vector256.LoadUnsafe(ref q2, c), u, c0);
                e0 = Fmadd(Vector256.LoadUnsafe(ref q3, c), u, e0);
            }
            Unsafe.Add(ref sr, t) = Vector256.Sum(a0) * scale;
            Unsafe.Add(ref sr, len + t) = Vector256.Sum(b0) * scale;
            Unsafe.Add(ref sr, 2 * len + t) = Vector256.Sum(c0) * scale;
            Unsafe.Add(ref sr, 3 * len + t) = Vector256.Sum(e0) * scale;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Fmadd(Vector256<float> a, Vector256<float> b, Vector256<float> acc) => Fma.MultiplyAdd(a, b, acc);

    /// <summary>scores[t] = scale q . k_t, four keys a pass (four independent accumulators, each query chunk loaded once
    /// for the four).</summary>
    private static void Scores(ReadOnlySpan<float> q, ReadOnlySpan<float> keys, int stride, int len, float scale, Span<float> scores)
    {
        int d = q.Length, t = 0;
        ref float qr = ref MemoryMarshal.GetReference(q);
        ref float kr = ref MemoryMarshal.GetReference(keys);
        for (; t + 3 < len; t += 4)
        {
            nuint k0 = (nuint)(t * stride), k1 = k0 + (nuint)stride, k2 = k1 + (nuint)stride, k3 = k2 + (nuint)stride;
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (nuint c = 0; c < (nuint)d; c += 8)
            {
                var x = Vector256.LoadUnsafe(ref qr, c);
                a0 = Fmadd(x, Vector256.LoadUnsafe(ref kr, k0 + c), a0);
                a1 = Fmadd(x, Vector256.LoadUnsafe(ref kr, k1 + c), a1);
                a2 = Fmadd(x, Vector256.LoadUnsafe(ref kr, k2 + c), a2);
                a3 = Fmadd(x, Vector256.LoadUnsafe(ref kr, k3 + c), a3);
            }
            scores[t] = Vector256.Sum(a0) * scale;
            scores[t + 1] = Vector256.Sum(a1) * scale;
            scores[t + 2] = Vector256.Sum(a2) * scale;
            scores[t + 3] = Vector256.Sum(a3) * scale;
        }
        for (; t < len; t++)
        {
            nuint k0 = (nuint)(t * stride);
            Vector256<float> a0 = default;
            for (nuint c = 0; c < (nuint)d; c += 8)
                a0 = Fmadd(Vector256.LoadUnsafe(ref qr, c), Vector256.LoadUnsafe(ref kr, k0 + c), a0);
            scores[t] = Vector256.Sum(a0) * scale;
        }
    }

    /// <summary>dst = sum_t p[t] v_t: 64 output features a pass over the rows in eight accumulators (then 8 a pass for the
    /// rest of the width).</summary>
    private static void ValueSum(ReadOnlySpan<float> p, ReadOnlySpan<float> values, int stride, int len, Span<float> dst)
    {
        int d = dst.Length, c = 0;
        ref float vr = ref MemoryMarshal.GetReference(values);
        ref float pr = ref MemoryMarshal.GetReference(p);
        ref float dr = ref MemoryMarshal.GetReference(dst);
        for (; c + 63 < d; c += 64)
        {
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
            nuint at = (nuint)c;
            for (int t = 0; t < len; t++, at += (nuint)stride)
            {
                var w = Vector256.Create(Unsafe.Add(ref pr, t));
                a0 = Fmadd(w, Vector256.LoadUnsafe(ref vr, at), a0);
                a1 = Fmadd(w, Vector256.LoadUnsafe(ref vr, at + 8), a1);
                a2 = Fmadd(w, Vector256.LoadUnsafe(ref vr, at + 16), a2);
                a3 = Fmadd(w, Vector256.LoadUnsafe(ref vr, at + 24), a3);
                a4 = Fmadd(w, Vector256.LoadUnsafe(ref vr, at + 32), a4);
                a5 = Fmadd(w, Vector256.LoadUnsafe(ref vr, at + 40), a5);
                a6 = Fmadd(w, Vector256.LoadUnsafe(ref vr, at + 48), a6);
                a7 = Fmadd(w, Vector256.LoadUnsafe(ref vr, at + 56), a7);
            }
            nuint o = (nuint)c;
            a0.StoreUnsafe(ref dr, o); a1.StoreUnsafe(ref dr, o + 8); a2.StoreUnsafe(ref dr, o + 16); a3.StoreUnsafe(ref dr, o + 24);
            a4.StoreUnsafe(ref dr, o + 32); a5.StoreUnsafe(ref dr, o + 40); a6.StoreUnsafe(ref dr, o + 48); a7.StoreUnsafe(ref dr, o + 56);
        }
        for (; c < d; c += 8)
        {
            Vector256<float> a0 = default;
            nuint at = (nuint)c;
            for (int t = 0; t < len; t++, at += (nuint)stride)
                a0 = Fmadd(Vector256.Create(Unsafe.Add(ref pr, t)), Vector256.LoadUnsafe(ref vr, at), a0);
            a0.StoreUnsafe(ref dr, (nuint)c);
        }
    }
}
