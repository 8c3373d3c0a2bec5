using ILGPU;

namespace KvIlgpu.Kernels;

internal static class SamplingKernels
{
    /// <summary>Greedy sampling: the index of the largest of x[offset ..+count] (lowest index on ties), written to
    /// result[0]. Launched as a single warp.</summary>
    public static void ArgMax(ArrayView<float> x, int offset, int count, ArrayView<int> result)
    {
        float best = float.NegativeInfinity;
        int bestIndex = int.MaxValue;
        for (int i = Warp.LaneIdx; i < count; i += Warp.WarpSize)
        {
            float v = x[offset + i];
            if (v > best) { best = v; bestIndex = i; }
        }
        for (int delta = Warp.WarpSize / 2; delta > 0; delta /= 2)
        {
            float ov = Warp.ShuffleDown(best, delta);
            int oi = Warp.ShuffleDown(bestIndex, delta);
            if (ov > best || (ov == best && oi < bestIndex)) { best = ov; bestIndex = oi; }
        }
        if (Warp.LaneIdx == 0) result[0] = bestIndex;
    }
}
