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

    /// <summary>Index of this warp among all warps of the launch, and how many there are: kernels loop
    /// "for (item = warp; item &lt; count; item += warps)" so any launch shape covers any size.</summary>
    public static int GlobalWarp => Grid.IdxX * (Group.DimX / Warp.WarpSize) + Warp.WarpIdx;
    public static int WarpCount => Grid.DimX * (Group.DimX / Warp.WarpSize);
}

/// <summary>Grid-stride loop bounds for elementwise kernels.</summary>
internal static class GridStride
{
    public static int Start => Grid.GlobalIndex.X;
    public static int Step => Grid.DimX * Group.DimX;
}
