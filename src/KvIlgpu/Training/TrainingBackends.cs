using KvIlgpu.Compute;

namespace KvIlgpu.Training;

/// <summary>Where training's forward and backward passes run, for a device choice.</summary>
internal static class TrainingBackends
{
    /// <summary>The ILGPU training kernels on CUDA or ILGPU's CPU accelerator, or null for the managed CPU trainer:
    /// <see cref="DeviceKind.Cpu"/> is the managed trainer, <see cref="DeviceKind.Auto"/> is CUDA when a device is
    /// present and the managed trainer otherwise; <see cref="DeviceKind.Cuda"/> without a device is an error.</summary>
    /// <exception cref="InvalidOptionException">Cuda was asked for and no CUDA device is present.</exception>
    public static IlgpuTrainingOps? Create(DeviceKind kind)
    {
        if (BackendFactory.ResolvesToCpu(kind)) return null;
        var backend = IlgpuBackend.TryCreate(kind is DeviceKind.Auto ? DeviceKind.Cuda : kind);
        if (backend is null && kind is DeviceKind.Auto) return null; // no GPU: the managed CPU code
        if (backend is null) throw new InvalidOptionException("Device",
            $"no CUDA device was found for Device {kind.ToString().ToLowerInvariant()} (use cpu)");
        return new IlgpuTrainingOps(backend, ownsBackend: true);
    }
}
