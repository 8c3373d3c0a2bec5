using ILGPU;
using ILGPU.Algorithms;

namespace KvIlgpu.Kernels;

internal static class OptimizerKernels
{
    /// <summary>AdamW with decoupled weight decay: m, v moments; p -= lr (m^ / (sqrt(v^) + eps) + decay p).</summary>
    public static void AdamW(ArrayView<float> p, ArrayView<float> g, ArrayView<float> m, ArrayView<float> v, int count, AdamWStep s)
    {
        for (int i = GridStride.Start; i < count; i += GridStride.Step)
        {
            float gi = g[i] * s.GradScale;
            float mi = s.Beta1 * m[i] + (1 - s.Beta1) * gi;
            float vi = s.Beta2 * v[i] + (1 - s.Beta2) * gi * gi;
            m[i] = mi;
            v[i] = vi;
            p[i] -= s.LearningRate * (mi / s.C1 / (XMath.Sqrt(vi / s.C2) + s.Epsilon) + s.Decay * p[i]);
        }
    }

    /// <summary>partials[c] = sum of squares of x[c], x[c + chunks], x[c + 2 chunks], ... for c &lt; chunks: a fixed
    /// split, so the host's final sum (for the gradient norm) is deterministic.</summary>
    public static void SumOfSquaresPartials(ArrayView<float> x, ArrayView<float> partials, int count, int chunks)
    {
        for (int c = GridStride.Start; c < chunks; c += GridStride.Step)
        {
            float sum = 0;
            for (int i = c; i < count; i += chunks) sum += x[i] * x[i];
            partials[c] = sum;
        }
    }
}
