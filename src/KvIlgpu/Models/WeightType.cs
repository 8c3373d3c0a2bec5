namespace KvIlgpu.Models;

/// <summary>How a weight's elements are stored (on the host and on the device). The quantised types are ggml's block
/// formats, kept as their raw blocks and decoded in the kernels (see <see cref="Quantization.QuantFormats"/>).</summary>
#pragma warning disable CA1707 // the names are ggml's own (Q4_K), as every GGUF tool prints them
public enum WeightType
{
    /// <summary>32-bit IEEE floats.</summary>
    F32,
    /// <summary>16-bit IEEE floats (raw bit patterns, widened in the kernels).</summary>
    F16,
    /// <summary>bfloat16 (raw bit patterns, widened in the kernels).</summary>
    BF16,
    /// <summary>ggml q8_0: blocks of 32, an f16 scale and 32 signed bytes.</summary>
    Q8_0,
    /// <summary>ggml q4_0: blocks of 32, an f16 scale and 32 nibbles offset by 8.</summary>
    Q4_0,
    /// <summary>ggml q4_1: blocks of 32, f16 scale and minimum, 32 nibbles.</summary>
    Q4_1,
    /// <summary>ggml q5_0: blocks of 32, an f16 scale, 32 five-bit values offset by 16.</summary>
    Q5_0,
    /// <summary>ggml q5_1: blocks of 32, f16 scale and minimum, 32 five-bit values.</summary>
    Q5_1,
    /// <summary>ggml q4_K: super-blocks of 256, eight sub-blocks of 32 with 6-bit scales and minimums, 4-bit values.</summary>
    Q4_K,
    /// <summary>ggml q5_K: as q4_K with a fifth bit per value.</summary>
    Q5_K,
    /// <summary>ggml q6_K: super-blocks of 256, sixteen sub-blocks of 16 with 8-bit scales, 6-bit values offset by 32.</summary>
    Q6_K,
}
#pragma warning restore CA1707
