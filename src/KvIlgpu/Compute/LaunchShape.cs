using ILGPU;
using ILGPU.Runtime;

namespace KvIlgpu.Compute;

/// <summary>How kernels are launched on one accelerator. Every kernel loops grid-stride, so any shape covers any
/// size; the shape is chosen for speed. A GPU wants many wide groups; ILGPU's CPU accelerator simulates each
/// thread and group, so it wants few groups of few threads.</summary>
internal sealed record LaunchShape(int GroupSize, int MaxGroups, int WarpSize, int Tile, bool ThreadPerOutput = false)
{
    public static LaunchShape For(Accelerator accelerator)
    {
        if (accelerator.AcceleratorType == AcceleratorType.CPU)
        {
            int group = Math.Min(accelerator.MaxNumThreadsPerGroup, 4 * accelerator.WarpSize);
            // Small simulated groups: matrix products take one thread per output (no shuffles, no barriers).
            return new LaunchShape(group, Math.Max(1, Environment.ProcessorCount), accelerator.WarpSize, (int)Math.Sqrt(group),
                ThreadPerOutput: group < 16);
        }
        return new LaunchShape(256, Math.Max(1, accelerator.NumMultiprocessors) * 8, accelerator.WarpSize, 16);
    }

    /// <summary>Groups for an elementwise kernel over count items.</summary>
    public KernelConfig Elementwise(long count) =>
        new((int)Math.Clamp((count + GroupSize - 1) / GroupSize, 1, MaxGroups), GroupSize);

    /// <summary>Groups for a kernel that gives one warp to each of count items.</summary>
    public KernelConfig WarpPerItem(long count)
    {
        int warpsPerGroup = GroupSize / WarpSize;
        return new((int)Math.Clamp((count + warpsPerGroup - 1) / warpsPerGroup, 1, MaxGroups), GroupSize);
    }

    /// <summary>Groups of Tile*Tile threads for a tiled kernel with tileCount output tiles.</summary>
    public KernelConfig Tiled(long tileCount) =>
        new((int)Math.Clamp(tileCount, 1, MaxGroups * 4), Tile * Tile);
}
