using KvIlgpu.Compute;

namespace KvIlgpu.Tests.Support;

/// <summary>The backends tests run on: ILGPU's CPU accelerator with the production launch shape (2-lane warps,
/// 1x1 tiles), the same kernels with wide groups (4-lane warps, 16-thread groups, 4x4 shared-memory tiles), and the
/// managed SIMD backend; "ilgpu-cpu-planning" is the wide shape planning eviction on the device as CUDA does. Each
/// ILGPU backend is created once, because kernel compilation is the slow part.</summary>
internal static class Backends
{
    private static readonly Lazy<IComputeBackend> IlgpuCpu = new(() => BackendFactory.Create(DeviceKind.IlgpuCpu));
    private static readonly Lazy<IComputeBackend> IlgpuCpuWide = new(() => IlgpuBackend.TryCreate(DeviceKind.IlgpuCpu, 4, 4)!);
    private static readonly Lazy<IComputeBackend> IlgpuCpuPlanning = new(() => IlgpuBackend.TryCreate(DeviceKind.IlgpuCpu, 4, 4,
        planEvictionOnDevice: true)!);
    private static readonly Lazy<IComputeBackend> Cuda = new(() => IlgpuBackend.TryCreate(DeviceKind.Cuda)
        ?? throw new InvalidOperationException(CudaDevice.MissingReason));
    private static readonly Lazy<IComputeBackend> Managed = new(() => new ManagedSimdBackend());
    private static readonly object Gate = new();

    public static IComputeBackend Get(string name) => name switch
    {
        "ilgpu-cpu" => IlgpuCpu.Value,
        "ilgpu-cpu-wide" => IlgpuCpuWide.Value,
        "ilgpu-cpu-planning" => IlgpuCpuPlanning.Value,
        "cuda" => Cuda.Value, // only from tests marked [CudaFact] or [CudaTheory]
        "cpu" => Managed.Value,
        _ => throw new ArgumentException(name),
    };

    /// <summary>ILGPU accelerators are not meant to be driven from several threads at once; tests that share one take this lock.</summary>
    public static object Lock => Gate;

    public static TheoryData<string> All => new() { "ilgpu-cpu", "cpu" };
    public static TheoryData<string> AllShapes => new() { "ilgpu-cpu", "ilgpu-cpu-wide", "cpu" };
}
