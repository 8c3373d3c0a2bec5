namespace KvIlgpu.Models.Loading;

/// <summary>ggml tensor types this loader understands (subset of ggml_type, with ggml's ids).</summary>
internal enum GgmlType : uint
{
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q4_K = 12, Q5_K = 13, Q6_K = 14, BF16 = 30,
}
