using KvIlgpu.Models.Quantization;

namespace KvIlgpu.Models.Saving;

/// <summary>Moves the rows of each head of a Q or K projection (or its bias, as a column) between RoPE's two pair
/// orders: interleaved pairs (2i, 2i + 1), as llama2.c and GGUF store them, and half-split (i, i + d/2), as Hugging Face
/// does. Row 2i + p of the interleaved order is row p d/2 + i of the half-split one.</summary>
internal static class RopeRowOrder
{
    public static WeightTensor ToInterleaved(WeightTensor t, int heads) => Permute(t, heads, toHalfSplit: false);

    public static WeightTensor ToHalfSplit(WeightTensor t, int heads) => Permute(t, heads, toHalfSplit: true);

    private static WeightTensor Permute(WeightTensor t, int heads, bool toHalfSplit)
    {
        var src = t.ToFloat();
        var dst = new float[src.Length];
        int d = t.Rows / heads;
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < d / 2; i++)
                for (int p = 0; p < 2; p++)
                {
                    long halfSplit = h * d + p * d / 2 + i, interleaved = h * d + 2 * i + p;
                    var (from, to) = toHalfSplit ? (interleaved, halfSplit) : (halfSplit, interleaved);
                    Array.Copy(src, from * t.Cols, dst, to * t.Cols, t.Cols);
                }
        return WeightTensor.FromF32(t.Name, t.Rows, t.Cols, dst).ConvertTo(t.Type.IsQuantized() ? WeightType.F32 : t.Type);
    }
}
