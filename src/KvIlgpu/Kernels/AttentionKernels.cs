using ILGPU;
using ILGPU.Algorithms;

namespace KvIlgpu.Kernels;

internal static class AttentionKernels
{
    /// <summary>Causal grouped-query attention, one warp per (query row, query head). Query row r sits at position
    /// StartPosition + r and attends keys 0 ..= that position of KV head h / (Heads / KvHeads). Lanes stride over
    /// positions for the scores (kept in the scratch buffer) and over features for the weighted sum of values.</summary>
    public static void CausalAttention(ArrayView<float> q, ArrayView<float> keys, ArrayView<float> values,
        ArrayView<float> output, ArrayView<float> scores, AttentionParams p)
    {
        int d = p.HeadDim, qDim = p.Heads * d, kvDim = p.KvHeads * d, group = p.Heads / p.KvHeads;
        float scale = XMath.Rsqrt(d);
        for (int item = WarpReduce.GlobalWarp; item < p.Rows * p.Heads; item += WarpReduce.WarpCount)
        {
            int r = item / p.Heads, h = item % p.Heads, kvh = h / group;
            int len = p.StartPosition + r + 1;
            long qb = (long)r * qDim + h * d;
            long sb = (long)item * p.ScoreStride;
            float max = float.NegativeInfinity;
            for (int t = Warp.LaneIdx; t < len; t += Warp.WarpSize)
            {
                float s = AttentionMath.ScaledScore(q, qb, keys, p.CacheOffset + (long)t * kvDim + kvh * d, d, scale);
                scores[sb + t] = s;
                max = XMath.Max(max, s);
            }
            float inv = WarpReduce.ExpInPlace(scores, sb, len, max);
            for (int i = Warp.LaneIdx; i < d; i += Warp.WarpSize)
            {
                float acc = 0;
                for (int t = 0; t < len; t++) acc += scores[sb + t] * values[p.CacheOffset + (long)t * kvDim + kvh * d + i];
                output[(long)r * qDim + h * d + i] = acc * inv;
            }
        }
    }

    // Training attention over one whole sequence: q [t, heads*d], k and v [t, kvHeads*d]. The probabilities kept for
    // the backward pass (and the score gradients) are stored key-major, probs[(h * t + j) * t + i] for query i and key
    // j, so that neighbouring threads, which hold neighbouring query rows, touch neighbouring addresses. Each step is
    // its own kernel with one thread per output element (per score, per softmax row, per output feature), which gives a
    // GPU enough threads to fill it at any sequence length. Forward: CausalScores(q, k), TrainingSoftmax,
    // CausalWeightedSum(probs, v). Backward: CausalScores(dO, v), AttentionSoftmaxGrad, CausalWeightedSum(dS, k) into
    // dq, then AttentionKeyValueGrad.

    /// <summary>Index of (head h, key j, query i) in the key-major probability layout.</summary>
    private static long ProbIndex(int h, int j, int i, int t) => ((long)h * t + j) * t + i;

    /// <summary>scores[h, j, i] = scale * a_i . b_j (a row i, head h; b row j, KV head of h) for j &lt;= i, 0 above the
    /// diagonal: the attention scores (a = q, b = k, scale 1/sqrt(d)) and, in the backward, dP (a = dO, b = v, scale 1).</summary>
    public static void CausalScores(ArrayView<float> a, ArrayView<float> b, ArrayView<float> scores, int t, int heads, int kvHeads, int d,
        float scale)
    {
        int group = heads / kvHeads, qDim = heads * d, kvDim = kvHeads * d;
        for (long idx = GridStride.Start; idx < (long)heads * t * t; idx += GridStride.Step)
        {
            int i = (int)(idx % t), j = (int)(idx / t % t), h = (int)(idx / t / t);
            scores[idx] = j <= i ? AttentionMath.ScaledScore(a, (long)i * qDim + h * d, b, (long)j * kvDim + h / group * d, d, scale) : 0f;
        }
    }

    /// <summary>Causal softmax of each (head, query) row of scores, in place; one thread per row.</summary>
    public static void TrainingSoftmax(ArrayView<float> probs, int t, int heads)
    {
        for (int idx = GridStride.Start; idx < heads * t; idx += GridStride.Step)
        {
            int h = idx / t, i = idx % t;
            float max = float.NegativeInfinity;
            for (int j = 0; j <= i; j++) max = XMath.Max(max, probs[ProbIndex(h, j, i, t)]);
            float sum = 0;
            for (int j = 0; j <= i; j++) { long at = ProbIndex(h, j, i, t); float e = XMath.Exp(probs[at] - max); probs[at] = e; sum += e; }
            float inv = 1f / sum;
            for (int j = 0; j <= i; j++) probs[ProbIndex(h, j, i, t)] *= inv;
        }
    }

    /// <summary>y[i, h*d + c] = (or, with accumulate, +=) sum_j w[h, j, i] b[j, kvh*d + c]; one thread per element: the
    /// attention output (w = probs, b = v) and, in the backward, dq (w = dS, b = k, accumulated).</summary>
    public static void CausalWeightedSum(ArrayView<float> w, ArrayView<float> b, ArrayView<float> y, int t, int heads, int kvHeads, int d,
        int accumulate)
    {
        int group = heads / kvHeads, qDim = heads * d, kvDim = kvHeads * d;
        for (int idx = GridStride.Start; idx < t * qDim; idx += GridStride.Step)
        {
            int i = idx / qDim, h = idx % qDim / d, c = idx % d;
            long bc = h / group * d + c;
            float sum = 0;
            for (int j = 0; j <= i; j++) sum += w[ProbIndex(h, j, i, t)] * b[(long)j * kvDim + bc];
            y[idx] = accumulate != 0 ? y[idx] + sum : sum;
        }
    }

    /// <summary>Softmax backward of each row, in place: dS = P (dP - sum_j dP P) / sqrt(d).</summary>
    public static void AttentionSoftmaxGrad(ArrayView<float> probs, ArrayView<float> dScores, int t, int heads, int d)
    {
        float scale = XMath.Rsqrt(d);
        for (int idx = GridStride.Start; idx < heads * t; idx += GridStride.Step)
        {
            int h = idx / t, i = idx % t;
            float rowsum = 0;
            for (int j = 0; j <= i; j++) { long at = ProbIndex(h, j, i, t); rowsum += dScores[at] * probs[at]; }
            for (int j = 0; j <= i; j++) { long at = ProbIndex(h, j, i, t); dScores[at] = probs[at] * (dScores[at] - rowsum) * scale; }
        }
    }

    /// <summary>Backward for keys and values, one thread per (KV head, key row, feature) summing over its query heads
    /// and the queries at or after the key: dk += dS^T Q, dv += P^T dO.</summary>
    public static void AttentionKeyValueGrad(ArrayView<float> q, ArrayView<float> probs, ArrayView<float> dScores, ArrayView<float> dOut,
        ArrayView<float> dk, ArrayView<float> dv, int t, int heads, int kvHeads, int d)
    {
        int group = heads / kvHeads, qDim = heads * d, kvDim = kvHeads * d;
        for (int idx = GridStride.Start; idx < kvHeads * t * d; idx += GridStride.Step)
        {
            int c = idx % d, j = idx / d % t, kvh = idx / d / t;
            float gk = 0, gv = 0;
            for (int h = kvh * group; h < (kvh + 1) * group; h++)
            {
                long row = ProbIndex(h, j, 0, t);
                for (int i = j; i < t; i++)
                {
                    long o = (long)i * qDim + h * d + c;
                    gv += probs[row + i] * dOut[o];
                    gk += dScores[row + i] * q[o];
                }
            }
            long kv = (long)j * kvDim + kvh * d + c;
            dv[kv] += gv;
            dk[kv] += gk;
        }
    }
}
