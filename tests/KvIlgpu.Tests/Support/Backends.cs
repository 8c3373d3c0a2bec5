using KvIlgpu.Compute;

namespace KvIlgpu.Tests.Support;

/// <summary>The backends every kernel test runs on: ILGPU's CPU accelerator (the ILGPU kernels) and the managed SIMD
/// backend. One ILGPU context is shared because kernel compilation is the slow part.</summary>
public static class Backends
{
    private static readonly Lazy<IComputeBackend> IlgpuCpu = new(() => BackendFactory.Create(DeviceKind.IlgpuCpu));
    private static readonly Lazy<IComputeBackend> Managed = new(() => new ManagedSimdBackend());

    public static IComputeBackend Get(string name) => name switch
    {
        "ilgpu-cpu" => IlgpuCpu.Value,
        "cpu" => Managed.Value,
        _ => throw new ArgumentException(name),
    };

    public static TheoryData<string> All => new() { "ilgpu-cpu", "cpu" };
}
