using ILGPU;

namespace KvIlgpu.Kernels;

/// <summary>Small per-thread math shared by the attention kernels.</summary>
internal static class AttentionMath
{
    /// <summary>(q[qOffset ..+d] . k[kOffset ..+d]) * scale.</summary>
    public static float ScaledScore(ArrayView<float> q, long qOffset, ArrayView<float> k, long kOffset, int d, float scale)
    {
        float s = 0;
        for (int i = 0; i < d; i++) s += q[qOffset + i] * k[kOffset + i];
        return s * scale;
    }

    /// <summary>(q[qOffset ..+width] . the packed key row at word kWord) * scale, the key's features widened from storage
    /// type (a q8 row's codes are summed as they are: put its scale into scale).</summary>
    public static float ScaledScore(ArrayView<float> q, long qOffset, ArrayView<int> k, long kWord, int width, int storage, float scale)
    {
        float s = 0;
        for (int i = 0; i < width; i++) s += q[qOffset + i] * KvCodec.Load(k, kWord, i, storage, 1f);
        return s * scale;
    }
}
