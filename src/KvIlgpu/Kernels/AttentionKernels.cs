using ILGPU;
using ILGPU.Algorithms;

namespace KvIlgpu.Kernels;

/// <summary>Sizes of a causal attention launch over a dense per-layer cache [position, kvHeads * headDim].</summary>
public struct AttentionParams
{
    public int Rows, StartPosition, Heads, KvHeads, HeadDim, CacheOffset, ScoreStride;
}

public static class AttentionKernels
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

    // Training attention over one whole sequence: q [t, heads*d], k and v [t, kvHeads*d], probs [heads, t, t].
    // One thread per (head, query row), or per (KV head, key row) for the key/value gradients; the probabilities are
    // kept for the backward pass.

    /// <summary>Causal GQA attention that stores the softmax probabilities (zero above the diagonal).</summary>
    public static void TrainingAttention(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> output,
        ArrayView<float> probs, int t, int heads, int kvHeads, int d)
    {
        int group = heads / kvHeads, qDim = heads * d, kvDim = kvHeads * d;
        float scale = XMath.Rsqrt(d);
        for (int idx = GridStride.Start; idx < heads * t; idx += GridStride.Step)
        {
            int h = idx / t, i = idx % t, kvh = h / group;
            long row = ((long)h * t + i) * t;
            float max = float.NegativeInfinity;
            for (int j = 0; j <= i; j++)
            {
                float s = AttentionMath.ScaledScore(q, (long)i * qDim + h * d, k, (long)j * kvDim + kvh * d, d, scale);
                probs[row + j] = s;
                max = XMath.Max(max, s);
            }
            float sum = 0;
            for (int j = 0; j <= i; j++) { float e = XMath.Exp(probs[row + j] - max); probs[row + j] = e; sum += e; }
            float inv = 1f / sum;
            for (int j = 0; j < t; j++) probs[row + j] = j <= i ? probs[row + j] * inv : 0f;
            for (int c = 0; c < d; c++)
            {
                float o = 0;
                for (int j = 0; j <= i; j++) o += probs[row + j] * v[(long)j * kvDim + kvh * d + c];
                output[(long)i * qDim + h * d + c] = o;
            }
        }
    }

    /// <summary>Backward for the queries: dP = dO V^T, dS = P (dP - rowsum(dP P)) * scale (stored in dScores for the
    /// key gradient), dq += dS K.</summary>
    public static void AttentionQueryGrad(ArrayView<float> k, ArrayView<float> v, ArrayView<float> probs, ArrayView<float> dOut,
        ArrayView<float> dScores, ArrayView<float> dq, int t, int heads, int kvHeads, int d)
    {
        int group = heads / kvHeads, qDim = heads * d, kvDim = kvHeads * d;
        float scale = XMath.Rsqrt(d);
        for (int idx = GridStride.Start; idx < heads * t; idx += GridStride.Step)
        {
            int h = idx / t, i = idx % t, kvh = h / group;
            long row = ((long)h * t + i) * t, o = (long)i * qDim + h * d;
            float rowsum = 0;
            for (int j = 0; j <= i; j++)
            {
                float dp = AttentionMath.ScaledScore(dOut, o, v, (long)j * kvDim + kvh * d, d, 1f);
                dScores[row + j] = dp;
                rowsum += dp * probs[row + j];
            }
            for (int j = 0; j <= i; j++) dScores[row + j] = probs[row + j] * (dScores[row + j] - rowsum) * scale;
            for (int c = 0; c < d; c++)
            {
                float g = 0;
                for (int j = 0; j <= i; j++) g += dScores[row + j] * k[(long)j * kvDim + kvh * d + c];
                dq[o + c] += g;
            }
        }
    }

    /// <summary>Backward for keys and values, one thread per (KV head, key row) summing over its query heads and the
    /// queries at or after it: dk += dS^T Q, dv += P^T dO.</summary>
    public static void AttentionKeyValueGrad(ArrayView<float> q, ArrayView<float> probs, ArrayView<float> dScores, ArrayView<float> dOut,
        ArrayView<float> dk, ArrayView<float> dv, int t, int heads, int kvHeads, int d)
    {
        int group = heads / kvHeads, qDim = heads * d, kvDim = kvHeads * d;
        for (int idx = GridStride.Start; idx < kvHeads * t; idx += GridStride.Step)
        {
            int kvh = idx / t, j = idx % t;
            long kv = (long)j * kvDim + kvh * d;
            for (int h = kvh * group; h < (kvh + 1) * group; h++)
                for (int i = j; i < t; i++)
                {
                    long at = ((long)h * t + i) * t + j, o = (long)i * qDim + h * d;
                    float p = probs[at], ds = dScores[at];
                    for (int c = 0; c < d; c++)
                    {
                        dv[kv + c] += p * dOut[o + c];
                        dk[kv + c] += ds * q[o + c];
                    }
                }
        }
    }
}
