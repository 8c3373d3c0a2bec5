using ILGPU;
using ILGPU.Algorithms;

namespace KvIlgpu.Kernels;

public static class NormKernels
{
    /// <summary>RMSNorm, one warp per row: y = x / sqrt(mean(x^2) + eps) * weight.</summary>
    public static void RmsNorm(ArrayView<float> x, ArrayView<float> weight, ArrayView<float> y, int rows, int dim, float eps)
    {
        for (int r = WarpReduce.GlobalWarp; r < rows; r += WarpReduce.WarpCount)
        {
            long b = (long)r * dim;
            float ss = 0;
            for (int i = Warp.LaneIdx; i < dim; i += Warp.WarpSize) ss += x[b + i] * x[b + i];
            ss = WarpReduce.Sum(ss);
            float scale = XMath.Rsqrt(ss / dim + eps);
            for (int i = Warp.LaneIdx; i < dim; i += Warp.WarpSize) y[b + i] = x[b + i] * scale * weight[i];
        }
    }
}
