using ILGPU;

namespace KvIlgpu.Kernels;

/// <summary>Grid-stride loop bounds for elementwise kernels.</summary>
internal static class GridStride
{
    public static int Start => Grid.GlobalIndex.X;
    public static int Step => Grid.DimX * Group.DimX;
}
