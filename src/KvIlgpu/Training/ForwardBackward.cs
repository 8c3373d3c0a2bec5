using System.Numerics.Tensors;
using KvIlgpu.Compute;
using KvIlgpu.Models;

namespace KvIlgpu.Training;

/// <summary>Forward and backward passes of every op of the Llama model, on the CPU, for training. Shapes are row-major:
/// x [M, K], w [N, K] (out_features x in_features, as in the model), y [M, N]. Backward functions ADD into their
/// gradient outputs, so gradients accumulate over uses and micro-batches.</summary>
internal static class ForwardBackward
{
    /// <summary>y = x w^T.</summary>
    public static void MatMul(ReadOnlySpan<float> x, ReadOnlySpan<float> w, Span<float> y, int m, int k, int n)
    {
        for (int r = 0; r < m; r++)
            for (int j = 0; j < n; j++)
                y[r * n + j] = TensorPrimitives.Dot(x.Slice(r * k, k), w.Slice(j * k, k));
    }

    /// <summary>dx += dy w; dw += dy^T x.</summary>
    public static void MatMulBackward(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> dy, Span<float> dx,
        Span<float> dw, int m, int k, int n)
    {
        for (int r = 0; r < m; r++)
            for (int j = 0; j < n; j++)
            {
                float g = dy[r * n + j];
                if (g == 0) continue;
                if (!dx.IsEmpty) TensorPrimitives.MultiplyAdd(w.Slice(j * k, k), g, dx.Slice(r * k, k), dx.Slice(r * k, k));
                if (!dw.IsEmpty) TensorPrimitives.MultiplyAdd(x.Slice(r * k, k), g, dw.Slice(j * k, k), dw.Slice(j * k, k));
            }
    }

    /// <summary>y = x / rms(x) * w per row; returns nothing, rms recomputed in backward.</summary>
    public static void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> w, Span<float> y, int rows, float eps)
    {
        int d = w.Length;
        for (int r = 0; r < rows; r++)
        {
            float inv = 1f / MathF.Sqrt(TensorPrimitives.SumOfSquares(x.Slice(r * d, d)) / d + eps);
            for (int i = 0; i < d; i++) y[r * d + i] = x[r * d + i] * inv * w[i];
        }
    }

    /// <summary>With s = 1/rms: dx_i = s w_i dy_i - s^3 x_i / d * sum_j(dy_j w_j x_j); dw_i += dy_i x_i s.</summary>
    public static void RmsNormBackward(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> dy, Span<float> dx,
        Span<float> dw, int rows, float eps)
    {
        int d = w.Length;
        for (int r = 0; r < rows; r++)
        {
            var xr = x.Slice(r * d, d);
            var g = dy.Slice(r * d, d);
            float s = 1f / MathF.Sqrt(TensorPrimitives.SumOfSquares(xr) / d + eps);
            float dot = 0;
            for (int i = 0; i < d; i++) dot += g[i] * w[i] * xr[i];
            for (int i = 0; i < d; i++)
            {
                dx[r * d + i] += s * w[i] * g[i] - s * s * s * xr[i] * dot / d;
                dw[i] += g[i] * xr[i] * s;
            }
        }
    }

    /// <summary>RoPE in place on [rows, heads * headDim] (sign = +1), or its inverse / backward (sign = -1): rotation
    /// is orthogonal, so the gradient is the gradient rotated back.</summary>
    public static void Rope(Span<float> x, int rows, int heads, int headDim, ReadOnlySpan<int> positions, RopeTable table,
        RopeLayout layout, int sign = 1)
    {
        int half = headDim / 2;
        for (int r = 0; r < rows; r++)
            for (int h = 0; h < heads; h++)
            {
                int b = (r * heads + h) * headDim;
                for (int i = 0; i < half; i++)
                {
                    float c = table.Cos[positions[r] * half + i], s = sign * table.Sin[positions[r] * half + i];
                    int i0 = layout == RopeLayout.InterleavedPairs ? b + 2 * i : b + i;
                    int i1 = layout == RopeLayout.InterleavedPairs ? i0 + 1 : i0 + half;
                    float v0 = x[i0], v1 = x[i1];
                    x[i0] = v0 * c - v1 * s;
                    x[i1] = v0 * s + v1 * c;
                }
            }
    }

    /// <summary>out = silu(g) * u.</summary>
    public static void SwiGlu(ReadOnlySpan<float> g, ReadOnlySpan<float> u, Span<float> y)
    {
        for (int i = 0; i < g.Length; i++) y[i] = g[i] / (1 + MathF.Exp(-g[i])) * u[i];
    }

    /// <summary>d silu(g)/dg = sig(g) (1 + g (1 - sig(g))).</summary>
    public static void SwiGluBackward(ReadOnlySpan<float> g, ReadOnlySpan<float> u, ReadOnlySpan<float> dy, Span<float> dg, Span<float> du)
    {
        for (int i = 0; i < g.Length; i++)
        {
            float sig = 1 / (1 + MathF.Exp(-g[i]));
            du[i] += dy[i] * g[i] * sig;
            dg[i] += dy[i] * u[i] * sig * (1 + g[i] * (1 - sig));
        }
    }

    /// <summary>Causal GQA attention of one sequence: q [T, H*d], k and v [T, Hkv*d], out [T, H*d];
    /// probs [H, T, T] is filled for the backward pass.</summary>
    public static void Attention(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, Span<float> output, Span<float> probs,
        int t, int heads, int kvHeads, int d)
    {
        int group = heads / kvHeads, qDim = heads * d, kvDim = kvHeads * d;
        float scale = 1f / MathF.Sqrt(d);
        output.Clear();
        for (int h = 0; h < heads; h++)
        {
            int kvh = h / group;
            for (int i = 0; i < t; i++)
            {
                var p = probs.Slice((h * t + i) * t, t);
                p.Clear();
                for (int j = 0; j <= i; j++)
                    p[j] = TensorPrimitives.Dot(q.Slice(i * qDim + h * d, d), k.Slice(j * kvDim + kvh * d, d)) * scale;
                SimdMath.SoftMax(p[..(i + 1)], p[..(i + 1)]);
                var o = output.Slice(i * qDim + h * d, d);
                for (int j = 0; j <= i; j++) TensorPrimitives.MultiplyAdd(v.Slice(j * kvDim + kvh * d, d), p[j], o, o);
            }
        }
    }

    /// <summary>dP = dO V^T; dS = P (dP - rowsum(dP P)); dQ += dS K * scale; dK += dS^T Q * scale; dV += P^T dO.</summary>
    public static void AttentionBackward(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, ReadOnlySpan<float> probs,
        ReadOnlySpan<float> dOut, Span<float> dq, Span<float> dk, Span<float> dv, int t, int heads, int kvHeads, int d)
    {
        int group = heads / kvHeads, qDim = heads * d, kvDim = kvHeads * d;
        float scale = 1f / MathF.Sqrt(d);
        var dp = new float[t];
        for (int h = 0; h < heads; h++)
        {
            int kvh = h / group;
            for (int i = 0; i < t; i++)
            {
                var p = probs.Slice((h * t + i) * t, t);
                var go = dOut.Slice(i * qDim + h * d, d);
                float rowsum = 0;
                for (int j = 0; j <= i; j++)
                {
                    dp[j] = TensorPrimitives.Dot(go, v.Slice(j * kvDim + kvh * d, d));
                    rowsum += dp[j] * p[j];
                    var dvj = dv.Slice(j * kvDim + kvh * d, d);
                    TensorPrimitives.MultiplyAdd(go, p[j], dvj, dvj);
                }
                var dqi = dq.Slice(i * qDim + h * d, d);
                for (int j = 0; j <= i; j++)
                {
                    float ds = p[j] * (dp[j] - rowsum) * scale;
                    TensorPrimitives.MultiplyAdd(k.Slice(j * kvDim + kvh * d, d), ds, dqi, dqi);
                    var dkj = dk.Slice(j * kvDim + kvh * d, d);
                    TensorPrimitives.MultiplyAdd(q.Slice(i * qDim + h * d, d), ds, dkj, dkj);
                }
            }
        }
    }

    /// <summary>dTable[token] += dy row.</summary>
    public static void EmbeddingBackward(ReadOnlySpan<int> tokens, ReadOnlySpan<float> dy, Span<float> dTable, int dim)
    {
        for (int r = 0; r < tokens.Length; r++)
            TensorPrimitives.Add(dTable.Slice(tokens[r] * dim, dim), dy.Slice(r * dim, dim), dTable.Slice(tokens[r] * dim, dim));
    }

    /// <summary>Mean cross-entropy over rows; dLogits = (softmax - onehot) / rows. Returns the loss.</summary>
    public static float CrossEntropy(ReadOnlySpan<float> logits, ReadOnlySpan<int> targets, Span<float> dLogits, int vocab) =>
        CrossEntropy(logits, targets, dLogits, vocab, []);

    /// <summary>Cross-entropy per row with row r's gradient (softmax - onehot) scaled by rowScale[r] (1/rows when
    /// rowScale is empty). Returns the plain mean loss.</summary>
    public static float CrossEntropy(ReadOnlySpan<float> logits, ReadOnlySpan<int> targets, Span<float> dLogits, int vocab,
        ReadOnlySpan<float> rowScale)
    {
        double loss = 0;
        int rows = targets.Length;
        for (int r = 0; r < rows; r++)
        {
            var lr = logits.Slice(r * vocab, vocab);
            var g = dLogits.Slice(r * vocab, vocab);
            SimdMath.SoftMax(lr, g);
            loss -= Math.Log(Math.Max(g[targets[r]], 1e-30f));
            g[targets[r]] -= 1;
            TensorPrimitives.Multiply(g, rowScale.IsEmpty ? 1f / rows : rowScale[r], g);
        }
        return (float)(loss / rows);
    }

    /// <summary>Mean KL(teacher || student) over rows from logits; dStudent = (softmax(student) - softmax(teacher)) / rows.</summary>
    public static float KlDivergence(ReadOnlySpan<float> teacherLogits, ReadOnlySpan<float> studentLogits, Span<float> dStudent, int vocab)
    {
        int rows = teacherLogits.Length / vocab;
        double loss = 0;
        var pt = new float[vocab];
        for (int r = 0; r < rows; r++)
        {
            SimdMath.SoftMax(teacherLogits.Slice(r * vocab, vocab), pt);
            var ps = dStudent.Slice(r * vocab, vocab);
            SimdMath.SoftMax(studentLogits.Slice(r * vocab, vocab), ps);
            for (int i = 0; i < vocab; i++)
                if (pt[i] > 0) loss += pt[i] * (Math.Log(pt[i]) - Math.Log(Math.Max(ps[i], 1e-30f)));
            for (int i = 0; i < vocab; i++) ps[i] = (ps[i] - pt[i]) / rows;
        }
        return (float)(loss / rows);
    }
}
