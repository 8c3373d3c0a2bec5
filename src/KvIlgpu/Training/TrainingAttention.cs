using System.Buffers;
using KvIlgpu.Compute;

namespace KvIlgpu.Training;

/// <summary>The managed trainer's causal attention, forward and backward, as matrix products on the inference backend's
/// register blocks, one query head at a time: the head's rows are gathered into contiguous [t, d] matrices (a KV head's
/// once for its group), the scores are S = Q K^T over j &lt;= i, and every other product runs over the causal band only
/// (a row block's prefix of keys, or a column block's suffix of queries), with the transposes it needs made once per head.
/// The same sums as <see cref="ForwardBackward.Attention"/> and <see cref="ForwardBackward.AttentionBackward"/> (tested
/// against them), which call the vector routines once per (query, key) pair. Single-threaded: the managed trainer runs
/// a batch's sequences in parallel.</summary>
internal static class TrainingAttention
{
    /// <summary>output = softmax(q k^T / sqrt(d), causal) v per head; probs [heads, t, t] receives the probabilities
    /// (zero above the diagonal). q [t, heads * d], k and v [t, kvHeads * d].</summary>
    public static void Forward(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, Span<float> output,
        Span<float> probs, int t, int heads, int kvHeads, int d)
    {
        int group = heads / kvHeads;
        float scale = 1f / MathF.Sqrt(d);
        using var s = new Scratch(t, d);
        for (int h = 0; h < heads; h++)
        {
            int g = h / group;
            if (h % group == 0) s.LoadKvHead(k, v, t, kvHeads * d, g * d, d, transposeKeys: false);
            Gather(q, t, heads * d, h * d, d, s.Q);
            var p = probs.Slice(h * t * t, t * t);
            p.Clear();
            CausalScores(s.Q, s.K, p, t, d, scale);
            for (int i = 0; i < t; i++) SimdMath.SoftMax(p.Slice(i * t, i + 1), p.Slice(i * t, i + 1));
            // O = P V over each row block's prefix of keys.
            BandProduct(p, s.VT, s.O, t, d, t, suffix: false, accumulate: false);
            Scatter(s.O, t, heads * d, h * d, d, output, add: false);
        }
    }

    /// <summary>dP = dO V^T; dS = P (dP - rowsum(dP P)) / sqrt(d); dq += dS K; dk += dS^T Q; dv += P^T dO.</summary>
    public static void Backward(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, ReadOnlySpan<float> probs,
        ReadOnlySpan<float> dOut, Span<float> dq, Span<float> dk, Span<float> dv, int t, int heads, int kvHeads, int d)
    {
        int group = heads / kvHeads;
        float scale = 1f / MathF.Sqrt(d);
        using var s = new Scratch(t, d);
        for (int h = 0; h < heads; h++)
        {
            int g = h / group;
            if (h % group == 0)
            {
                s.LoadKvHead(k, v, t, kvHeads * d, g * d, d, transposeKeys: true);
                s.DK.AsSpan(0, t * d).Clear();
                s.DV.AsSpan(0, t * d).Clear();
            }
            Gather(q, t, heads * d, h * d, d, s.Q);
            Gather(dOut, t, heads * d, h * d, d, s.O);
            var p = probs.Slice(h * t * t, t * t);
            var ds = s.Square1.AsSpan(0, t * t);
            ds.Clear();
            CausalScores(s.O, s.V, ds, t, d, 1f);
            for (int i = 0; i < t; i++)
            {
                var pi = p.Slice(i * t, i + 1);
                var di = ds.Slice(i * t, i + 1);
                float rowsum = 0;
                for (int j = 0; j <= i; j++) rowsum += di[j] * pi[j];
                for (int j = 0; j <= i; j++) di[j] = pi[j] * (di[j] - rowsum) * scale;
            }
            // dQ = dS K over each row block's prefix.
            BandProduct(ds, s.KT, s.DQ, t, d, t, suffix: false, accumulate: false);
            Scatter(s.DQ, t, heads * d, h * d, d, dq, add: true);
            // dK += dS^T Q and dV += P^T dO, over each row block's suffix of queries.
            TrainingMatMul.Transpose(ds, t, t, s.Square2);
            TrainingMatMul.Transpose(s.Q, t, d, s.QT);
            BandProduct(s.Square2, s.QT, s.DK, t, d, t, suffix: true, accumulate: true);
            TrainingMatMul.Transpose(p, t, t, s.Square2);
            TrainingMatMul.Transpose(s.O, t, d, s.QT);
            BandProduct(s.Square2, s.QT, s.DV, t, d, t, suffix: true, accumulate: true);
            if (h % group == group - 1)
            {
                Scatter(s.DK, t, kvHeads * d, g * d, d, dk, add: true);
                Scatter(s.DV, t, kvHeads * d, g * d, d, dv, add: true);
            }
        }
    }

    /// <summary>c[i * t + j] = a_i . b_j * scale for j &lt;= i (a and b [t, d]); the rest of c untouched. Rows three at a
    /// time against key pairs below all three rows' diagonals, the few pairs at the diagonal one product at a time.</summary>
    private static void CausalScores(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, int t, int d, float scale)
    {
        Span<float> six = stackalloc float[6];
        int i = 0;
        for (; i + 3 <= t; i += 3)
        {
            var a0 = a.Slice(i * d, d);
            var a1 = a.Slice((i + 1) * d, d);
            var a2 = a.Slice((i + 2) * d, d);
            int j = 0;
            for (; j + 2 <= i + 1; j += 2)
            {
                SimdMath.Dot3x2(a0, a1, a2, b.Slice(j * d, d), b.Slice((j + 1) * d, d), six);
                c[i * t + j] = six[0] * scale; c[i * t + j + 1] = six[1] * scale;
                c[(i + 1) * t + j] = six[2] * scale; c[(i + 1) * t + j + 1] = six[3] * scale;
                c[(i + 2) * t + j] = six[4] * scale; c[(i + 2) * t + j + 1] = six[5] * scale;
            }
            for (int r = i; r < i + 3; r++)
                for (int jj = j; jj <= r; jj++) c[r * t + jj] = SimdMath.Dot(a.Slice(r * d, d), b.Slice(jj * d, d)) * scale;
        }
        for (; i < t; i++)
            for (int j = 0; j <= i; j++) c[i * t + j] = SimdMath.Dot(a.Slice(i * d, d), b.Slice(j * d, d)) * scale;
    }

    /// <summary>c[r, col] (+)= a_r . b_col over a band of the length: a [rows, length] is zero outside each row's band,
    /// so each block of rows takes the union of its rows' bands: with suffix false, row r's band is [0, r + 1) (a block
    /// of rows r0.. takes [0, last + 1)); with suffix true, [r, length) (the block takes [r0, length)). b [cols, length],
    /// cols even.</summary>
    private static void BandProduct(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, int rows, int cols, int length,
        bool suffix, bool accumulate)
    {
        Span<float> six = stackalloc float[6];
        int r = 0;
        for (; r + 3 <= rows; r += 3)
        {
            int start = suffix ? r : 0, end = suffix ? length : r + 3, n = end - start;
            var a0 = a.Slice(r * length + start, n);
            var a1 = a.Slice((r + 1) * length + start, n);
            var a2 = a.Slice((r + 2) * length + start, n);
            for (int j = 0; j < cols; j += 2)
            {
                SimdMath.Dot3x2(a0, a1, a2, b.Slice(j * length + start, n), b.Slice((j + 1) * length + start, n), six);
                TrainingMatMul.PutBlock(c, r, j, cols, six, accumulate);
            }
        }
        for (; r < rows; r++)
        {
            int start = suffix ? r : 0, end = suffix ? length : r + 1, n = end - start;
            var row = a.Slice(r * length + start, n);
            for (int j = 0; j < cols; j++)
                TrainingMatMul.Put(c, r * cols + j, SimdMath.Dot(row, b.Slice(j * length + start, n)), accumulate);
        }
    }

    /// <summary>dst [t, d] = the d features at offset of each of src's t rows (stride floats apart).</summary>
    private static void Gather(ReadOnlySpan<float> src, int t, int stride, int offset, int d, float[] dst)
    {
        for (int i = 0; i < t; i++) src.Slice(i * stride + offset, d).CopyTo(dst.AsSpan(i * d, d));
    }

    /// <summary>The inverse of <see cref="Gather"/>, writing or adding.</summary>
    private static void Scatter(float[] src, int t, int stride, int offset, int d, Span<float> dst, bool add)
    {
        for (int i = 0; i < t; i++)
        {
            var to = dst.Slice(i * stride + offset, d);
            if (add) System.Numerics.Tensors.TensorPrimitives.Add(to, src.AsSpan(i * d, d), to);
            else src.AsSpan(i * d, d).CopyTo(to);
        }
    }

    /// <summary>One call's per-head matrices, rented from the shared pool.</summary>
    private sealed class Scratch : IDisposable
    {
        public readonly float[] Q, K, V, O, KT, VT, QT, DQ, DK, DV, Square1, Square2;

        public Scratch(int t, int d)
        {
            var pool = ArrayPool<float>.Shared;
            Q = pool.Rent(t * d); K = pool.Rent(t * d); V = pool.Rent(t * d); O = pool.Rent(t * d);
            KT = pool.Rent(t * d); VT = pool.Rent(t * d); QT = pool.Rent(t * d);
            DQ = pool.Rent(t * d); DK = pool.Rent(t * d); DV = pool.Rent(t * d);
            Square1 = pool.Rent(t * t); Square2 = pool.Rent(t * t);
        }

        /// <summary>A KV head's keys and values into K and V (and KT, or VT: the transpose the pass needs).</summary>
        public void LoadKvHead(ReadOnlySpan<float> k, ReadOnlySpan<float> v, int t, int stride, int offset, int d, bool transposeKeys)
        {
            Gather(k, t, stride, offset, d, K);
            Gather(v, t, stride, offset, d, V);
            if (transposeKeys) TrainingMatMul.Transpose(K, t, d, KT);
            else TrainingMatMul.Transpose(V, t, d, VT);
        }

        public void Dispose()
        {
            foreach (var a in new[] { Q, K, V, O, KT, VT, QT, DQ, DK, DV, Square1, Square2 }) ArrayPool<float>.Shared.Return(a);
        }
    }
}
