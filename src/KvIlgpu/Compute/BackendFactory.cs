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
                try
                {
                    var cuda = IlgpuBackend.TryCreate(DeviceKind.Cuda);
                    if (cuda != null) return cuda;
                }
                catch (Exception) { /* no usable CUDA driver: fall back to the CPU */ }
                return new ManagedSimdBackend(cpuThreads);
        }
    }
}
