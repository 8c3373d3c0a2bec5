using ILGPU;

namespace KvIlgpu.Kernels;

/// <summary>Per-head affine maps of K, V, query or attention-output rows (MatryoshkaKV's projections and un-projections).
/// </summary>
internal static class ProjectionKernels
{
    /// <summary>output[r, h, i] = sum_j maps[h, i, j] * (x[r, h, j] - subtract[h, j]) + add[h, i], for x and output
    /// [rows, heads * headDim], maps [heads, headDim, headDim], subtract and add [heads, headDim]; one thread per output
    /// element.</summary>
    public static void ProjectHeads(ArrayView<float> x, ArrayView<float> output, ArrayView<float> maps, ArrayView<float> subtract,
        ArrayView<float> add, int rows, int heads, int headDim)
    {
        int total = rows * heads * headDim;
        for (int idx = GridStride.Start; idx < total; idx += GridStride.Step)
        {
            int i = idx % headDim;
            int rh = idx / headDim;
            int h = rh % heads;
            long row = (long)rh * headDim, map = ((long)h * headDim + i) * headDim, mean = (long)h * headDim;
            float sum = 0;
            for (int j = 0; j < headDim; j++) sum += maps[map + j] * (x[row + j] - subtract[mean + j]);
            output[idx] = sum + add[mean + i];
        }
    }
}
