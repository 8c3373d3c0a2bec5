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
}
