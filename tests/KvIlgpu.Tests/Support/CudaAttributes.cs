using ILGPU;
using ILGPU.Runtime.Cuda;

namespace KvIlgpu.Tests.Support;

/// <summary>Whether this machine has a CUDA device ILGPU can open (an NVIDIA GPU and its driver).</summary>
internal static class CudaDevice
{
    private static readonly Lazy<bool> Present = new(() =>
    {
        try
        {
            using var context = Context.Create(b => b.Cuda());
            return context.GetCudaDevices().Count > 0;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return false; // no driver library, or a driver that refuses: no usable device
        }
    });

    public static bool Available => Present.Value;

    public const string MissingReason = "no CUDA device on this machine (the test runs the ILGPU kernels on an NVIDIA GPU)";
}

/// <summary>A fact that runs the kernels on CUDA; skipped with a reason where no CUDA device is present.</summary>
internal sealed class CudaFactAttribute : FactAttribute
{
    public CudaFactAttribute(bool needsShared = false)
    {
        if (!CudaDevice.Available) Skip = CudaDevice.MissingReason;
        else if (needsShared && SharedData.Root == null) Skip = SharedData.MissingReason;
    }
}

/// <summary>A theory that runs the kernels on CUDA; skipped with a reason where no CUDA device is present.</summary>
internal sealed class CudaTheoryAttribute : TheoryAttribute
{
    public CudaTheoryAttribute()
    {
        if (!CudaDevice.Available) Skip = CudaDevice.MissingReason;
    }
}
