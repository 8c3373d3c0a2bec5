namespace KvIlgpu.Compute;

/// <summary>Where the kernels run.</summary>
public enum DeviceKind
{
    /// <summary>CUDA when a CUDA device is present, else the managed SIMD CPU backend.</summary>
    Auto,
    /// <summary>The managed SIMD CPU backend (System.Numerics.Tensors, Vector256): the fast CPU path.</summary>
    Cpu,
    /// <summary>The ILGPU kernels on a CUDA GPU.</summary>
    Cuda,
    /// <summary>The ILGPU kernels on ILGPU's CPU accelerator: slow, for testing the kernels without a GPU.</summary>
    IlgpuCpu,
}
