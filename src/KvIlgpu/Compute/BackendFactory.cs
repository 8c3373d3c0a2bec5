namespace KvIlgpu.Compute;

/// <summary>Creates the backend for a device choice. Auto prefers CUDA and falls back to the managed CPU backend.</summary>
internal static class BackendFactory
{
    public static IComputeBackend Create(DeviceKind kind, int? cpuThreads = null)
    {
        switch (kind)
        {
            case DeviceKind.Cpu:
                return new ManagedSimdBackend(cpuThreads);
            case DeviceKind.IlgpuCpu:
                return IlgpuBackend.TryCreate(DeviceKind.IlgpuCpu)!;
            case DeviceKind.Cuda:
                return IlgpuBackend.TryCreate(DeviceKind.Cuda)
                    ?? throw new InvalidOperationException("no CUDA device was found for Device cuda (is the NVIDIA driver installed?)");
            default:
                return ResolvesToCpu(kind) ? new ManagedSimdBackend(cpuThreads) : AutoDevice(cpuThreads);
        }
    }

    /// <summary>Whether a device choice runs on the managed CPU backend without probing for CUDA: Cpu, or Auto where the
    /// NVIDIA driver's library is not there to load.</summary>
    public static bool ResolvesToCpu(DeviceKind kind) => kind == DeviceKind.Cpu || (kind == DeviceKind.Auto && !CudaDriver.IsPresent);

    private static IComputeBackend AutoDevice(int? cpuThreads)
    {
        try
        {
            var cuda = IlgpuBackend.TryCreate(DeviceKind.Cuda);
            if (cuda != null) return cuda;
        }
        catch (Exception) { /* no usable CUDA driver: fall back to the CPU */ }
        return new ManagedSimdBackend(cpuThreads);
    }
}
