using ILGPU;

namespace KvIlgpu.Kernels;

internal static class RopeKernels
{
    /// <summary>Rotary position embedding in place over x [rows, heads * headDim]: pair i of every head is rotated
    /// by the angle for (positions[r], i) from the precomputed cos/sin tables [position, headDim/2].
    /// interleaved != 0 pairs (2i, 2i+1) (llama2.c, GGUF); otherwise (i, i + headDim/2) (Hugging Face).</summary>
    public static void Rope(ArrayView<float> x, ArrayView<int> positions, ArrayView<float> cos, ArrayView<float> sin,
        int rows, int heads, int headDim, int interleaved)
    {
        int half = headDim / 2;
        int total = rows * heads * half;
        for (int idx = GridStride.Start; idx < total; idx += GridStride.Step)
        {
            int i = idx % half;
            int rh = idx / half;
            int r = rh / heads;
            long b = (long)rh * headDim;
            long i0 = interleaved != 0 ? b + 2 * i : b + i;
            long i1 = interleaved != 0 ? i0 + 1 : i0 + half;
            long t = (long)positions[r] * half + i;
            float c = cos[t], s = sin[t];
            float v0 = x[i0], v1 = x[i1];
            x[i0] = v0 * c - v1 * s;
            x[i1] = v0 * s + v1 * c;
        }
    }
}
