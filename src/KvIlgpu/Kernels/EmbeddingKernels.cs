using ILGPU;

namespace KvIlgpu.Kernels;

public static class EmbeddingKernels
{
    /// <summary>y[r, :] = table[tokens[r], :], widened to f32.</summary>
    public static void Embed<T, TDecoder>(ArrayView<T> table, ArrayView<int> tokens, ArrayView<float> y, int rows, int dim)
        where T : unmanaged where TDecoder : struct, IWeightDecoder<T>
    {
        var decoder = default(TDecoder);
        int total = rows * dim;
        for (int i = GridStride.Start; i < total; i += GridStride.Step)
        {
            int r = i / dim, c = i % dim;
            y[i] = decoder.Decode(table[(long)tokens[r] * dim + c]);
        }
    }
}
