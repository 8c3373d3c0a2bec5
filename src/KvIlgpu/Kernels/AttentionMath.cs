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
}
