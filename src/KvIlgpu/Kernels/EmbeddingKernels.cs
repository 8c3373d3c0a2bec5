using ILGPU;

namespace KvIlgpu.Kernels;

internal static class EmbeddingKernels
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
            y[i] = decoder.Decode(table, (long)tokens[r] * dim + c);
        }
    }

    /// <summary>Backward of the embedding: dTable[tokens[r], c] += dy[r, c]. One thread per feature c walks the rows in
    /// order, so repeated tokens add up without atomics and in a fixed order.</summary>
    public static void EmbeddingBackward(ArrayView<int> tokens, ArrayView<float> dy, ArrayView<float> dTable, int rows, int dim)
    {
        for (int c = GridStride.Start; c < dim; c += GridStride.Step)
            for (int r = 0; r < rows; r++)
                dTable[(long)tokens[r] * dim + c] += dy[(long)r * dim + c];
    }
}
