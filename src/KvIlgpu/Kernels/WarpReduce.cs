using ILGPU;
using ILGPU.Algorithms;

namespace KvIlgpu.Kernels;

/// <summary>Warp-level reductions whose result every lane receives.</summary>
internal static class WarpReduce
{
    public static float Sum(float value)
    {
        for (int offset = Warp.WarpSize / 2; offset > 0; offset /= 2)
            value += Warp.ShuffleDown(value, offset);
        return Warp.Shuffle(value, 0);
    }

    public static float Max(float value)
    {
        for (int offset = Warp.WarpSize / 2; offset > 0; offset /= 2)
            value = XMath.Max(value, Warp.ShuffleDown(value, offset));
        return Warp.Shuffle(value, 0);
    }

    /// <summary>Softmax numerators in place: scores[offset + t] for t &lt; length (each lane wrote its own t, and
    /// localMax is the lane's largest) become exp(score - max); returns 1 / sum, the same in every lane.
    /// The warp barrier makes every lane's writes visible to the whole warp before they are read back.</summary>
    public static float ExpInPlace(ArrayView<float> scores, long offset, int length, float localMax)
    {
        float max = Max(localMax);
        float sum = 0;
        for (int t = Warp.LaneIdx; t < length; t += Warp.WarpSize)
        {
            float e = XMath.Exp(scores[offset + t] - max);
            scores[offset + t] = e;
            sum += e;
        }
        sum = Sum(sum);
        Warp.Barrier();
        return 1f / sum;
    }

    /// <summary>Index of this warp among all warps of the launch, and how many there are: kernels loop
    /// "for (item = warp; item &lt; count; item += warps)" so any launch shape covers any size.</summary>
    public static int GlobalWarp => Grid.IdxX * (Group.DimX / Warp.WarpSize) + Warp.WarpIdx;
    public static int WarpCount => Grid.DimX * (Group.DimX / Warp.WarpSize);
}
