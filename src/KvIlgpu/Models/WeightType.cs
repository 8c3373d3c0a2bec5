namespace KvIlgpu.Models;

/// <summary>How a weight's elements are stored (on the host and on the device).</summary>
public enum WeightType
{
    /// <summary>32-bit IEEE floats.</summary>
    F32,
    /// <summary>16-bit IEEE floats (raw bit patterns, widened in the kernels).</summary>
    F16,
    /// <summary>bfloat16 (raw bit patterns, widened in the kernels).</summary>
    BF16,
}
