using ILGPU;
using ILGPU.Algorithms;

namespace KvIlgpu.Kernels;

/// <summary>Training losses over rows of logits, one thread per row. Each row's gradient is scaled by rowScale[r]
/// (1/rows for a mean, or per-token weights); the per-row loss is written unscaled.</summary>
internal static class LossKernels
{
    /// <summary>Cross-entropy of the target token: loss_r = logsumexp(z) - z_target; dz = (softmax(z) - onehot) * scale.</summary>
    public static void CrossEntropy(ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> rowScale, ArrayView<float> dLogits,
        ArrayView<float> losses, int rows, int vocab)
    {
        for (int r = GridStride.Start; r < rows; r += GridStride.Step)
        {
            long b = (long)r * vocab;
            float max = float.NegativeInfinity;
            for (int i = 0; i < vocab; i++) max = XMath.Max(max, logits[b + i]);
            float sum = 0;
            for (int i = 0; i < vocab; i++) sum += XMath.Exp(logits[b + i] - max);
            float logZ = max + XMath.Log(sum), scale = rowScale[r];
            int target = targets[r];
            losses[r] = logZ - logits[b + target];
            for (int i = 0; i < vocab; i++) dLogits[b + i] = (XMath.Exp(logits[b + i] - logZ) - (i == target ? 1f : 0f)) * scale;
        }
    }

    /// <summary>KL(teacher || student) from logits: loss_r = sum p_t (log p_t - log p_s); dz_s = (p_s - p_t) * scale.</summary>
    public static void KlDivergence(ArrayView<float> teacher, ArrayView<float> student, ArrayView<float> rowScale,
        ArrayView<float> dStudent,
        ArrayView<float> losses, int rows, int vocab)
    {
        for (int r = GridStride.Start; r < rows; r += GridStride.Step)
        {
            long b = (long)r * vocab;
            float maxT = float.NegativeInfinity, maxS = float.NegativeInfinity;
            for (int i = 0; i < vocab; i++) { maxT = XMath.Max(maxT, teacher[b + i]); maxS = XMath.Max(maxS, student[b + i]); }
            float sumT = 0, sumS = 0;
            for (int i = 0; i < vocab; i++) { sumT += XMath.Exp(teacher[b + i] - maxT); sumS += XMath.Exp(student[b + i] - maxS); }
            float logZt = maxT + XMath.Log(sumT), logZs = maxS + XMath.Log(sumS), scale = rowScale[r], loss = 0;
            for (int i = 0; i < vocab; i++)
            {
                float logPt = teacher[b + i] - logZt, logPs = student[b + i] - logZs, pt = XMath.Exp(logPt);
                loss += pt * (logPt - logPs);
                dStudent[b + i] = (XMath.Exp(logPs) - pt) * scale;
            }
            losses[r] = loss;
        }
    }
}
