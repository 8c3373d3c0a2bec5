using System.Runtime.InteropServices;

namespace KvIlgpu.Compute;

/// <summary>Whether the NVIDIA driver's library can be loaded: the cheap test before the full CUDA probe. Creating an
/// ILGPU context to look for devices costs about a fifth of a second, which every CPU-only start paid for nothing;
/// without the driver there can be no CUDA device, so Auto goes straight to the CPU.</summary>
internal static class CudaDriver
{
    private static readonly Lazy<bool> Present = new(Probe);

    /// <summary>True when the driver library loads (a device may still be absent: the full probe decides).</summary>
    public static bool IsPresent => Present.Value;

    private static bool Probe()
    {
        string[] names = OperatingSystem.IsWindows() ? ["nvcuda.dll"]
            : OperatingSystem.IsLinux() ? ["libcuda.so.1", "libcuda.so"] : [];
        foreach (var name in names)
            if (NativeLibrary.TryLoad(name, out var handle))
            {
                NativeLibrary.Free(handle);
                return true;
            }
        return false;
    }
}
