using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using KvIlgpu.Kernels;

namespace KvIlgpu.Compute;

/// <summary>The managed backend's decode attention of one (row, KV head) for its whole query group, with every cached
/// row widened from its storage type in registers, where it is used, and used there for up to four query heads at once:
/// no widened copy of a block is written and read back, and a row's widening is shared by the heads that read it.
/// <list type="bullet">
/// <item>Scores: eight (head, row) dot products a pass (four heads by two rows, two by four, or one by eight), each row
/// widened once per 16 features, the eight sums reduced together by horizontal adds.</item>
/// <item>Value sums: the group's outputs held in registers 16 or 32 features at a time while every row of a block is
/// added, each row widened once per 16 features for all the heads.</item>
/// </list>
/// Every product and sum is done in the order of the row-at-a-time path (<see cref="SimdMath.Scores"/>,
/// <see cref="SimdMath.WeightedSum"/>), so the two give bitwise the same output (tested). 16-bit rows widen in pair
/// order (<see cref="KvRowDecoder.ToPairOrder"/>): the queries are put in that order once, and the value sums come back
/// out of it once. f16 rows widen to 2^-112 times their value with no multiply: the queries and the probabilities carry
/// the 2^112 instead, exactly (each FMA's product is the same real number). Serves widths of whole 8s (a projection's
/// ranks in steps of d/8: 16 features a pass, and a last pass of 8 where the width is an odd number of 8s) on CPUs with
/// AVX2 and FMA; <see cref="Attend"/> says when it declines a head (f16 infinities or NaNs in the rows, which the in-place
/// widening would make finite; queries too large to carry 2^112), and the caller then takes the exact path.</summary>
internal static class GroupedPagedAttention
{
    /// <summary>Whether heads of these cached widths take this path on this CPU.</summary>
    public static bool Serves(int keyWidth, int valueWidth) =>
        Avx2.IsSupported && Fma.IsSupported && keyWidth % 8 == 0 && valueWidth % 8 == 0;

    /// <summary>One thread's scratch, kept for its next call (the backend's workers are long-lived threads) and grown as
    /// layouts and lengths need.</summary>
    private sealed class Scratch
    {
        [ThreadStatic] private static Scratch? _current;

        /// <summary>The group's queries in the storage type's order and scale, head h at h * HeadDim.</summary>
        public float[] Queries = [];
        /// <summary>The probabilities times the row factor (q8 value scales, f16's 2^112), head h at h * stride.</summary>
        public float[] Weights = [];
        /// <summary>Each visible slot's q8 value scale, in logical order.</summary>
        public float[] Factors = [];
        /// <summary>The group's value sums in pair order (16-bit rows), head h at h * HeadDim.</summary>
        public float[] Sums = [];

        public static Scratch For(in PagedLayout p, int stride)
        {
            var s = _current ??= new Scratch();
            int features = p.GroupSize * p.HeadDim;
            if (s.Queries.Length < features) { s.Queries = new float[features]; s.Sums = new float[features]; }
            if (s.Weights.Length < p.GroupSize * stride) { s.Weights = new float[p.GroupSize * stride]; s.Factors = new float[stride]; }
            return s;
        }
    }

    /// <summary>Attention of the group's query heads over a head's len visible slots: scores, then probabilities, into
    /// scores (head h's at h * stride), and the output into output (head h's HeadDim features at h * HeadDim, the
    /// features past the value width zero). queries holds the group's queries (head h's at h * HeadDim). Returns false,
    /// having written nothing that the exact path does not overwrite, where it declines (see the class).</summary>
    public static bool Attend(in PagedLayout p, int[] pool, float[] scales, int[] tables, int head, int len,
        ReadOnlySpan<float> queries, Span<float> scores, int stride, Span<float> output) => p.Storage switch
        {
            KvCodec.F32 => Attend<F32Rows>(p, pool, scales, tables, head, len, queries, scores, stride, output),
            KvCodec.F16 => Attend<F16Rows>(p, pool, scales, tables, head, len, queries, scores, stride, output),
            KvCodec.BF16 => Attend<Bf16Rows>(p, pool, scales, tables, head, len, queries, scores, stride, output),
            _ => Attend<Q8Rows>(p, pool, scales, tables, head, len, queries, scores, stride, output),
        };

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool Attend<T>(in PagedLayout p, int[] pool, float[] scales, int[] tables, int head,
        int len, ReadOnlySpan<float> queries, Span<float> scores, int stride, Span<float> output)
        where T : struct, IRowFormat
    {
        var scratch = Scratch.For(p, stride);
        var shape = p.Shape(tables, head);
        int group = p.GroupSize, d = p.HeadDim, kw = shape.KeyWidth, vw = shape.ValueWidth, bs = shape.TokensPerBlock;
        float scale = 1f / MathF.Sqrt(d);
        if (T.Scaled && TensorPrimitives.MaxMagnitude(queries) >= 32768f) return false;
        var q = scratch.Queries;
        for (int h = 0; h < group; h++)
        {
            var from = queries.Slice(h * d, kw);
            var to = q.AsSpan(h * d, kw);
            if (T.Paired) KvRowDecoder.ToPairOrder(from, to); else from.CopyTo(to);
            if (T.Scaled) TensorPrimitives.Multiply(to, HalfRescale, to);
        }
        var special = Vector256<uint>.Zero;
        ref float qr = ref MemoryMarshal.GetArrayDataReference(q);
        ref float sr = ref MemoryMarshal.GetReference(scores);
        ref float scaleRef = ref MemoryMarshal.GetArrayDataReference(scales);
        for (int t0 = 0; t0 < len; t0 += bs)
        {
            int count = Math.Min(bs, len - t0);
            long slot0 = p.Slot(tables[p.TableIndex(head, t0, shape)], t0, shape);
            ref int rows = ref pool[p.KeyOffset(slot0, shape)];
            ref float rowScales = ref T.RowScales ? ref Unsafe.Add(ref scaleRef, (nint)(2 * slot0)) : ref scaleRef;
            for (int h = 0; h < group;)
            {
                ref float qh = ref Unsafe.Add(ref qr, h * d);
                ref float dst = ref Unsafe.Add(ref sr, h * stride + t0);
                int words = shape.KeyWords;
                if (group - h >= 4)
                    ScoreRows<T, Four>(ref qh, d, kw, ref rows, words, count, scale, ref rowScales, ref dst, stride, ref special);
                else if (group - h >= 2)
                    ScoreRows<T, Two>(ref qh, d, kw, ref rows, words, count, scale, ref rowScales, ref dst, stride, ref special);
                else ScoreRows<T, One>(ref qh, d, kw, ref rows, words, count, scale, ref rowScales, ref dst, stride, ref special);
                h += group - h >= 4 ? 4 : group - h >= 2 ? 2 : 1;
            }
        }
        for (int h = 0; h < group; h++)
        {
            var sc = scores.Slice(h * stride, len);
            SimdMath.SoftMax(sc, sc);
        }
        bool paired = T.Paired;
        var sums = paired ? scratch.Sums.AsSpan(0, group * d) : output[..(group * d)];
        sums.Clear();
        ref float or = ref MemoryMarshal.GetReference(sums);
        // The probabilities that weight the rows, times the row factor where there is one: one vector pass a head.
        ref float weights = ref sr;
        if (T.RowScales || T.Scaled)
        {
            if (T.RowScales)
                for (int t0 = 0; t0 < len; t0 += bs)
                {
                    long slot0 = p.Slot(tables[p.TableIndex(head, t0, shape)], t0, shape);
                    for (int i = 0, count = Math.Min(bs, len - t0); i < count; i++) scratch.Factors[t0 + i] = scales[2 * (slot0 + i) + 1];
                }
            for (int h = 0; h < group; h++)
            {
                var from = scores.Slice(h * stride, len);
                var to = scratch.Weights.AsSpan(h * stride, len);
                if (T.Scaled) TensorPrimitives.Multiply(from, HalfRescale, to);
                else TensorPrimitives.Multiply(from, scratch.Factors.AsSpan(0, len), to);
            }
            weights = ref MemoryMarshal.GetArrayDataReference(scratch.Weights);
        }
        for (int t0 = 0; t0 < len; t0 += bs)
        {
            int count = Math.Min(bs, len - t0);
            long slot0 = p.Slot(tables[p.TableIndex(head, t0, shape)], t0, shape);
            ref int rows = ref pool[p.ValueOffset(slot0, shape)];
            for (int h = 0; h < group;)
            {
                ref float wh = ref Unsafe.Add(ref weights, h * stride + t0);
                ref float oh = ref Unsafe.Add(ref or, h * d);
                int words = shape.ValueWords;
                if (group - h >= 4) ValueRows<T, Four>(ref rows, words, count, ref wh, stride, ref oh, d, vw, ref special);
                else if (group - h >= 2) ValueRows<T, Two>(ref rows, words, count, ref wh, stride, ref oh, d, vw, ref special);
                else ValueRows<T, One>(ref rows, words, count, ref wh, stride, ref oh, d, vw, ref special);
                h += group - h >= 4 ? 4 : group - h >= 2 ? 2 : 1;
            }
        }
        if (T.Scaled && Vector256.GreaterThanOrEqualAny(special.AsUInt16(), Vector256.Create((ushort)0x7C00))) return false;
        if (paired)
        {
            output[..(group * d)].Clear();
            for (int h = 0; h < group; h++) KvRowDecoder.FromPairOrder(sums.Slice(h * d, vw), output.Slice(h * d, vw));
        }
        return true;
    }

    /// <summary>Scores of H query heads (head h's query at q + h * queryStride, kw features) against count rows of a block
    /// (row i at rows + i * rowWords words), 8 / H rows a pass, into dst (head h's row i at dst + h * dstStride + i); a
    /// pass past the block's last row repeats that row and drops its sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ScoreRows<T, H>(ref float q, int queryStride, int kw, ref int rows, int rowWords, int count, float scale,
        ref float rowScales, ref float dst, int dstStride, ref Vector256<uint> specials)
        where T : struct, IRowFormat where H : struct, IHeadCount
    {
        // A local, so that it stays in a register (a ref parameter would be read and written through memory per row).
        var special = specials;
        int heads = H.Count, perPass = 8 / heads;
        ref float q1 = ref Unsafe.Add(ref q, heads > 1 ? queryStride : 0);
        ref float q2 = ref Unsafe.Add(ref q, heads > 2 ? 2 * queryStride : 0);
        ref float q3 = ref Unsafe.Add(ref q, heads > 2 ? 3 * queryStride : 0);
        for (int t0 = 0; t0 < count; t0 += perPass)
        {
            int last = count - 1;
            ref int r0 = ref Unsafe.Add(ref rows, Math.Min(t0, last) * rowWords);
            ref int r1 = ref Unsafe.Add(ref rows, Math.Min(t0 + 1, last) * rowWords);
            ref int r2 = ref Unsafe.Add(ref rows, heads < 4 ? Math.Min(t0 + 2, last) * rowWords : 0);
            ref int r3 = ref Unsafe.Add(ref rows, heads < 4 ? Math.Min(t0 + 3, last) * rowWords : 0);
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            Vector256<float> a4 = default, a5 = default, a6 = default, a7 = default;
            for (int c = 0; c + 16 <= kw; c += 16)
            {
                nuint at = (nuint)c;
                if (heads == 4)
                {
                    var (x, y) = T.Widen(ref r0, c, ref special);
                    a0 = Dot16(ref q, at, x, y, a0); a1 = Dot16(ref q1, at, x, y, a1);
                    a2 = Dot16(ref q2, at, x, y, a2); a3 = Dot16(ref q3, at, x, y, a3);
                    (x, y) = T.Widen(ref r1, c, ref special);
                    a4 = Dot16(ref q, at, x, y, a4); a5 = Dot16(ref q1, at, x, y, a5);
                    a6 = Dot16(ref q2, at, x, y, a6); a7 = Dot16(ref q3, at, x, y, a7);
                }
                else if (heads == 2)
                {
                    var (x, y) = T.Widen(ref r0, c, ref special);
                    a0 = Dot16(ref q, at, x, y, a0); a1 = Dot16(ref q1, at, x, y, a1);
                    (x, y) = T.Widen(ref r1, c, ref special);
                    a2 = Dot16(ref q, at, x, y, a2); a3 = Dot16(ref q1, at, x, y, a3);
                    (x, y) = T.Widen(ref r2, c, ref special);
                    a4 = Dot16(ref q, at, x, y, a4); a5 = Dot16(ref q1, at, x, y, a5);
                    (x, y) = T.Widen(ref r3, c, ref special);
                    a6 = Dot16(ref q, at, x, y, a6); a7 = Dot16(ref q1, at, x, y, a7);
                }
                else
                {
                    var (x, y) = T.Widen(ref r0, c, ref special); a0 = Dot16(ref q, at, x, y, a0);
                    (x, y) = T.Widen(ref r1, c, ref special); a1 = Dot16(ref q, at, x, y, a1);
                    (x, y) = T.Widen(ref r2, c, ref special); a2 = Dot16(ref q, at, x, y, a2);
                    (x, y) = T.Widen(ref r3, c, ref special); a3 = Dot16(ref q, at, x, y, a3);
                    (x, y) = T.Widen(ref Unsafe.Add(ref rows, Math.Min(t0 + 4, last) * rowWords), c, ref special);
                    a4 = Dot16(ref q, at, x, y, a4);
                    (x, y) = T.Widen(ref Unsafe.Add(ref rows, Math.Min(t0 + 5, last) * rowWords), c, ref special);
                    a5 = Dot16(ref q, at, x, y, a5);
                    (x, y) = T.Widen(ref Unsafe.Add(ref rows, Math.Min(t0 + 6, last) * rowWords), c, ref special);
                    a6 = Dot16(ref q, at, x, y, a6);
                    (x, y) = T.Widen(ref Unsafe.Add(ref rows, Math.Min(t0 + 7, last) * rowWords), c, ref special);
                    a7 = Dot16(ref q, at, x, y, a7);
                }
            }
            if (kw % 16 != 0)
            {
                // The last 8 features, as the row-at-a-time path adds them: one more FMA per (head, row).
                int c = kw - 8;
                nuint at = (nuint)c;
                if (heads == 4)
                {
                    var x = T.Widen8(ref r0, c, ref special);
                    a0 = Dot8(ref q, at, x, a0); a1 = Dot8(ref q1, at, x, a1); a2 = Dot8(ref q2, at, x, a2); a3 = Dot8(ref q3, at, x, a3);
                    x = T.Widen8(ref r1, c, ref special);
                    a4 = Dot8(ref q, at, x, a4); a5 = Dot8(ref q1, at, x, a5); a6 = Dot8(ref q2, at, x, a6); a7 = Dot8(ref q3, at, x, a7);
                }
                else if (heads == 2)
                {
                    var x = T.Widen8(ref r0, c, ref special); a0 = Dot8(ref q, at, x, a0); a1 = Dot8(ref q1, at, x, a1);
                    x = T.Widen8(ref r1, c, ref special); a2 = Dot8(ref q, at, x, a2); a3 = Dot8(ref q1, at, x, a3);
                    x = T.Widen8(ref r2, c, ref special); a4 = Dot8(ref q, at, x, a4); a5 = Dot8(ref q1, at, x, a5);
                    x = T.Widen8(ref r3, c, ref special); a6 = Dot8(ref q, at, x, a6); a7 = Dot8(ref q1, at, x, a7);
                }
                else
                {
                    a0 = Dot8(ref q, at, T.Widen8(ref r0, c, ref special), a0);
                    a1 = Dot8(ref q, at, T.Widen8(ref r1, c, ref special), a1);
                    a2 = Dot8(ref q, at, T.Widen8(ref r2, c, ref special), a2);
                    a3 = Dot8(ref q, at, T.Widen8(ref r3, c, ref special), a3);
                    a4 = Dot8(ref q, at, T.Widen8(ref Unsafe.Add(ref rows, Math.Min(t0 + 4, last) * rowWords), c, ref special), a4);
                    a5 = Dot8(ref q, at, T.Widen8(ref Unsafe.Add(ref rows, Math.Min(t0 + 5, last) * rowWords), c, ref special), a5);
                    a6 = Dot8(ref q, at, T.Widen8(ref Unsafe.Add(ref rows, Math.Min(t0 + 6, last) * rowWords), c, ref special), a6);
                    a7 = Dot8(ref q, at, T.Widen8(ref Unsafe.Add(ref rows, Math.Min(t0 + 7, last) * rowWords), c, ref special), a7);
                }
            }
            var sums = Sum8(a0, a1, a2, a3, a4, a5, a6, a7);
            ref float sum = ref Unsafe.As<Vector256<float>, float>(ref sums);
            for (int j = 0; j < 8; j++)
            {
                int t = t0 + j / heads;
                if (t < count)
                    Unsafe.Add(ref dst, j % heads * dstStride + t) = Unsafe.Add(ref sum, j)
                        * (T.RowScales ? scale * Unsafe.Add(ref rowScales, 2 * t) : scale);
            }
        }
        specials = special;
    }

    /// <summary>out += sum over the block's count rows of weight * row, for H heads (head h's weights at w + h *
    /// weightStride, its vw sums at o + h * outStride): 16 features of every head a pass for four heads, 32 for fewer, and
    /// a last pass of 8 where vw is an odd number of 8s; every row added in order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ValueRows<T, H>(ref int rows, int rowWords, int count, ref float w, int weightStride, ref float o,
        int outStride, int vw, ref Vector256<uint> specials) where T : struct, IRowFormat where H : struct, IHeadCount
    {
        var special = specials;
        int heads = H.Count;
        ref float w1 = ref Unsafe.Add(ref w, heads > 1 ? weightStride : 0);
        ref float w2 = ref Unsafe.Add(ref w, heads > 2 ? 2 * weightStride : 0);
        ref float w3 = ref Unsafe.Add(ref w, heads > 2 ? 3 * weightStride : 0);
        ref float o1 = ref Unsafe.Add(ref o, heads > 1 ? outStride : 0);
        ref float o2 = ref Unsafe.Add(ref o, heads > 2 ? 2 * outStride : 0);
        ref float o3 = ref Unsafe.Add(ref o, heads > 2 ? 3 * outStride : 0);
        for (int c = 0; c < vw;)
        {
            nuint at = (nuint)c;
            if (vw - c == 8)
            {
                // The last 8 features of every head.
                var s0 = Vector256.LoadUnsafe(ref o, at); var s1 = Vector256.LoadUnsafe(ref o1, at);
                var s2 = Vector256.LoadUnsafe(ref o2, at); var s3 = Vector256.LoadUnsafe(ref o3, at);
                for (int t = 0; t < count; t++)
                {
                    var x = T.Widen8(ref Unsafe.Add(ref rows, t * rowWords), c, ref special);
                    s0 = Fma.MultiplyAdd(x, Vector256.Create(Unsafe.Add(ref w, t)), s0);
                    if (heads > 1) s1 = Fma.MultiplyAdd(x, Vector256.Create(Unsafe.Add(ref w1, t)), s1);
                    if (heads > 2)
                    {
                        s2 = Fma.MultiplyAdd(x, Vector256.Create(Unsafe.Add(ref w2, t)), s2);
                        s3 = Fma.MultiplyAdd(x, Vector256.Create(Unsafe.Add(ref w3, t)), s3);
                    }
                }
                s0.StoreUnsafe(ref o, at);
                if (heads > 1) s1.StoreUnsafe(ref o1, at);
                if (heads > 2) { s2.StoreUnsafe(ref o2, at); s3.StoreUnsafe(ref o3, at); }
                c += 8;
            }
            else if (heads == 4)
            {
                var (s0x, s0y) = Load16(ref o, at); var (s1x, s1y) = Load16(ref o1, at);
                var (s2x, s2y) = Load16(ref o2, at); var (s3x, s3y) = Load16(ref o3, at);
                for (int t = 0; t < count; t++)
                {
                    var (x, y) = T.Widen(ref Unsafe.Add(ref rows, t * rowWords), c, ref special);
                    var p = Vector256.Create(Unsafe.Add(ref w, t));
                    s0x = Fma.MultiplyAdd(x, p, s0x); s0y = Fma.MultiplyAdd(y, p, s0y);
                    p = Vector256.Create(Unsafe.Add(ref w1, t));
                    s1x = Fma.MultiplyAdd(x, p, s1x); s1y = Fma.MultiplyAdd(y, p, s1y);
                    p = Vector256.Create(Unsafe.Add(ref w2, t));
                    s2x = Fma.MultiplyAdd(x, p, s2x); s2y = Fma.MultiplyAdd(y, p, s2y);
                    p = Vector256.Create(Unsafe.Add(ref w3, t));
                    s3x = Fma.MultiplyAdd(x, p, s3x); s3y = Fma.MultiplyAdd(y, p, s3y);
                }
                Store16(ref o, at, s0x, s0y); Store16(ref o1, at, s1x, s1y);
                Store16(ref o2, at, s2x, s2y); Store16(ref o3, at, s3x, s3y);
                c += 16;
            }
            else if (c + 32 <= vw)
            {
                // 32 features of one or two heads.
                var (s0x, s0y) = Load16(ref o, at); var (s0u, s0v) = Load16(ref o, at + 16);
                var (s1x, s1y) = Load16(ref o1, at); var (s1u, s1v) = Load16(ref o1, at + 16);
                for (int t = 0; t < count; t++)
                {
                    ref int row = ref Unsafe.Add(ref rows, t * rowWords);
                    var (x, y) = T.Widen(ref row, c, ref special);
                    var (u, v) = T.Widen(ref row, c + 16, ref special);
                    var p = Vector256.Create(Unsafe.Add(ref w, t));
                    s0x = Fma.MultiplyAdd(x, p, s0x); s0y = Fma.MultiplyAdd(y, p, s0y);
                    s0u = Fma.MultiplyAdd(u, p, s0u); s0v = Fma.MultiplyAdd(v, p, s0v);
                    if (heads == 2)
                    {
                        p = Vector256.Create(Unsafe.Add(ref w1, t));
                        s1x = Fma.MultiplyAdd(x, p, s1x); s1y = Fma.MultiplyAdd(y, p, s1y);
                        s1u = Fma.MultiplyAdd(u, p, s1u); s1v = Fma.MultiplyAdd(v, p, s1v);
                    }
                }
                Store16(ref o, at, s0x, s0y); Store16(ref o, at + 16, s0u, s0v);
                if (heads == 2) { Store16(ref o1, at, s1x, s1y); Store16(ref o1, at + 16, s1u, s1v); }
                c += 32;
            }
            else
            {
                // The last 16 features of one or two heads.
                var (s0x, s0y) = Load16(ref o, at); var (s1x, s1y) = Load16(ref o1, at);
                for (int t = 0; t < count; t++)
                {
                    var (x, y) = T.Widen(ref Unsafe.Add(ref rows, t * rowWords), c, ref special);
                    var p = Vector256.Create(Unsafe.Add(ref w, t));
                    s0x = Fma.MultiplyAdd(x, p, s0x); s0y = Fma.MultiplyAdd(y, p, s0y);
                    if (heads == 2)
                    {
                        p = Vector256.Create(Unsafe.Add(ref w1, t));
                        s1x = Fma.MultiplyAdd(x, p, s1x); s1y = Fma.MultiplyAdd(y, p, s1y);
                    }
                }
                Store16(ref o, at, s0x, s0y);
                if (heads == 2) Store16(ref o1, at, s1x, s1y);
                c += 16;
            }
        }
        specials = special;
    }

    /// <summary>acc + q[at..at+8] * x.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Dot8(ref float q, nuint at, Vector256<float> x, Vector256<float> acc) =>
        Fma.MultiplyAdd(Vector256.LoadUnsafe(ref q, at), x, acc);

    /// <summary>acc + q[at..at+8] * x + q[at+8..at+16] * y, the first product added first.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Dot16(ref float q, nuint at, Vector256<float> x, Vector256<float> y, Vector256<float> acc) =>
        Fma.MultiplyAdd(Vector256.LoadUnsafe(ref q, at + 8), y, Fma.MultiplyAdd(Vector256.LoadUnsafe(ref q, at), x, acc));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<float>, Vector256<float>) Load16(ref float o, nuint at) =>
        (Vector256.LoadUnsafe(ref o, at), Vector256.LoadUnsafe(ref o, at + 8));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store16(ref float o, nuint at, Vector256<float> x, Vector256<float> y)
    {
        x.StoreUnsafe(ref o, at);
        y.StoreUnsafe(ref o, at + 8);
    }

    /// <summary>The eight vectors' sums, lane j holding a_j's, each added as Vector256.Sum adds (the halves' pairs, then
    /// the pairs' sums, then the two halves).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Sum8(Vector256<float> a0, Vector256<float> a1, Vector256<float> a2, Vector256<float> a3,
        Vector256<float> a4, Vector256<float> a5, Vector256<float> a6, Vector256<float> a7)
    {
        var low = Avx.HorizontalAdd(Avx.HorizontalAdd(a0, a1), Avx.HorizontalAdd(a2, a3));
        var high = Avx.HorizontalAdd(Avx.HorizontalAdd(a4, a5), Avx.HorizontalAdd(a6, a7));
        return Avx.Permute2x128(low, high, 0x20) + Avx.Permute2x128(low, high, 0x31);
    }

    /// <summary>2^112: an f16 widened in place reads as 2^-112 times its value.</summary>
    private const float HalfRescale = 5.192297e+33f;

    /// <summary>How one storage type's rows widen, 16 features at a time, into two f32 vectors: one type per storage
    /// type, so each loop is compiled for its type.</summary>
    private interface IRowFormat
    {
        /// <summary>Whether the vectors are the 8 even- and the 8 odd-indexed features (pair order), not the first and
        /// the second 8.</summary>
        static abstract bool Paired { get; }
        /// <summary>Whether the widened values are 2^-112 times the stored ones (f16).</summary>
        static abstract bool Scaled { get; }
        /// <summary>Whether each row carries a scale (q8: the widened values are its codes).</summary>
        static abstract bool RowScales { get; }
        /// <summary>Features feature..feature+15 of the row whose first word is row; f16 rows also keep, in special,
        /// the largest magnitude (bits less the sign) of each 16-bit lane seen.</summary>
        static abstract (Vector256<float> X, Vector256<float> Y) Widen(ref int row, int feature, ref Vector256<uint> special);
        /// <summary>Features feature..feature+7 (a row's last 8, in the same order: paired rows' 4 even then 4 odd).</summary>
        static abstract Vector256<float> Widen8(ref int row, int feature, ref Vector256<uint> special);
    }

    private readonly struct F32Rows : IRowFormat
    {
        public static bool Paired => false;
        public static bool Scaled => false;
        public static bool RowScales => false;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static (Vector256<float> X, Vector256<float> Y) Widen(ref int row, int feature, ref Vector256<uint> special)
        {
            ref float f = ref Unsafe.As<int, float>(ref row);
            return (Vector256.LoadUnsafe(ref f, (nuint)feature), Vector256.LoadUnsafe(ref f, (nuint)feature + 8));
        }
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Widen8(ref int row, int feature, ref Vector256<uint> special) =>
            Vector256.LoadUnsafe(ref Unsafe.As<int, float>(ref row), (nuint)feature);
    }

    private readonly struct Bf16Rows : IRowFormat
    {
        public static bool Paired => true;
        public static bool Scaled => false;
        public static bool RowScales => false;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static (Vector256<float> X, Vector256<float> Y) Widen(ref int row, int feature, ref Vector256<uint> special)
        {
            var pairs = Vector256.LoadUnsafe(ref row, (nuint)(feature / 2));
            return (Vector256.ShiftLeft(pairs, 16).AsSingle(), (pairs & Vector256.Create(unchecked((int)0xFFFF0000))).AsSingle());
        }
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Widen8(ref int row, int feature, ref Vector256<uint> special)
        {
            var pairs = Vector128.LoadUnsafe(ref row, (nuint)(feature / 2));
            return Vector256.Create(Vector128.ShiftLeft(pairs, 16), pairs & Vector128.Create(unchecked((int)0xFFFF0000))).AsSingle();
        }
    }

    /// <summary>f16 pairs widened as <see cref="SimdMath.WidenF16(Vector256{ushort})"/> does, less its multiply.</summary>
    private readonly struct F16Rows : IRowFormat
    {
        public static bool Paired => true;
        public static bool Scaled => true;
        public static bool RowScales => false;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static (Vector256<float> X, Vector256<float> Y) Widen(ref int row, int feature, ref Vector256<uint> special)
        {
            var pairs = Vector256.LoadUnsafe(ref row, (nuint)(feature / 2));
            // The largest magnitude seen: an all-ones exponent makes it 0x7C00 or more.
            special = Avx2.Max(special.AsUInt16(), (pairs & Vector256.Create(0x7FFF7FFF)).AsUInt16()).AsUInt32();
            var mask = Vector256.Create(unchecked((int)0x8FFFE000));
            var even = Vector256.ShiftRightArithmetic(Vector256.ShiftLeft(pairs, 16), 3) & mask;
            return (even.AsSingle(), (Vector256.ShiftRightArithmetic(pairs, 3) & mask).AsSingle());
        }
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Widen8(ref int row, int feature, ref Vector256<uint> special)
        {
            var pairs = Vector128.LoadUnsafe(ref row, (nuint)(feature / 2));
            var magnitudes = (pairs & Vector128.Create(0x7FFF7FFF)).AsUInt16();
            special = Avx2.Max(special.AsUInt16(), Vector256.Create(magnitudes, Vector128<ushort>.Zero)).AsUInt32();
            var mask = Vector128.Create(unchecked((int)0x8FFFE000));
            var even = Vector128.ShiftRightArithmetic(Vector128.ShiftLeft(pairs, 16), 3) & mask;
            return Vector256.Create(even, Vector128.ShiftRightArithmetic(pairs, 3) & mask).AsSingle();
        }
    }

    /// <summary>q8 codes, eight at a time with one sign-extending load and one conversion.</summary>
    private readonly struct Q8Rows : IRowFormat
    {
        public static bool Paired => false;
        public static bool Scaled => false;
        public static bool RowScales => true;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static (Vector256<float> X, Vector256<float> Y) Widen(ref int row, int feature, ref Vector256<uint> special)
        {
            ref byte b = ref Unsafe.Add(ref Unsafe.As<int, byte>(ref row), feature);
            var low = Vector128.CreateScalarUnsafe(Unsafe.ReadUnaligned<long>(ref b)).AsSByte();
            var high = Vector128.CreateScalarUnsafe(Unsafe.ReadUnaligned<long>(ref Unsafe.Add(ref b, 8))).AsSByte();
            return (Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(low)),
                Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(high)));
        }
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Widen8(ref int row, int feature, ref Vector256<uint> special)
        {
            ref byte b = ref Unsafe.Add(ref Unsafe.As<int, byte>(ref row), feature);
            var codes = Vector128.CreateScalarUnsafe(Unsafe.ReadUnaligned<long>(ref b)).AsSByte();
            return Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(codes));
        }
    }

    /// <summary>How many query heads one pass serves: a type, so each count's loop is compiled for it.</summary>
    private interface IHeadCount
    {
        static abstract int Count { get; }
    }

    private readonly struct One : IHeadCount { public static int Count => 1; }
    private readonly struct Two : IHeadCount { public static int Count => 2; }
    private readonly struct Four : IHeadCount { public static int Count => 4; }
}
