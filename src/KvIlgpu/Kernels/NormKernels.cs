using ILGPU;
using ILGPU.Algorithms;

namespace KvIlgpu.Kernels;

internal static class NormKernels
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

    /// <summary>inverse[r] = 1 / sqrt(mean(x[r]^2) + eps), one thread per row (training keeps it for the backward).</summary>
    public static void RmsInverse(ArrayView<float> x, ArrayView<float> inverse, int rows, int dim, float eps)
    {
        for (int r = GridStride.Start; r < rows; r += GridStride.Step)
        {
            float ss = 0;
            for (int i = 0; i < dim; i++) ss += x[(long)r * dim + i] * x[(long)r * dim + i];
            inverse[r] = XMath.Rsqrt(ss / dim + eps);
        }
    }

    /// <summary>Backward of RMSNorm for the input, one thread per row. With s = inverse[r]:
    /// dx_i += s w_i dy_i - s^3 x_i / d * sum_j(dy_j w_j x_j).</summary>
    public static void RmsNormInputGrad(ArrayView<float> x, ArrayView<float> weight, ArrayView<float> inverse, ArrayView<float> dy,
        ArrayView<float> dx, int rows, int dim)
    {
        for (int r = GridStride.Start; r < rows; r += GridStride.Step)
        {
            long b = (long)r * dim;
            float s = inverse[r], dot = 0;
            for (int i = 0; i < dim; i++) dot += dy[b + i] * weight[i] * x[b + i];
            float k = s * s * s * dot / dim;
            for (int i = 0; i < dim; i++) dx[b + i] += s * weight[i] * dy[b + i] - k * x[b + i];
        }
    }

    /// <summary>Backward of RMSNorm for the weight, one thread per feature: dw_i += sum_r dy[r, i] x[r, i] inverse[r].</summary>
    public static void RmsNormWeightGrad(ArrayView<float> x, ArrayView<float> inverse, ArrayView<float> dy, ArrayView<float> dw, int rows,
        int dim)
    {
        for (int i = GridStride.Start; i < dim; i += GridStride.Step)
        {
            float sum = 0;
            for (int r = 0; r < rows; r++) sum += dy[(long)r * dim + i] * x[(long)r * dim + i] * inverse[r];
            dw[i] += sum;
        }
    }
}
