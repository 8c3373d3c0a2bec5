namespace KvIlgpu.Cache;

/// <summary>How the paged cache stores each cached key and value feature.</summary>
public enum KvStorageType
{
    /// <summary>The model's own weight type (f32, f16 or bf16), and f16 for quantised GGUF weights: what vLLM and llama.cpp
    /// do by default.</summary>
    Auto = 0,
    /// <summary>32-bit floats: exactly what the model computed.</summary>
    F32 = 1,
    /// <summary>IEEE half precision, rounded to nearest even (values beyond ±65504 become infinite).</summary>
    F16 = 2,
    /// <summary>bfloat16 (f32's range, 8 bits of mantissa), rounded to nearest even.</summary>
    BF16 = 3,
    /// <summary>int8 with one f32 scale per token and head (max |x| / 127 of that token's key, and of its value).</summary>
    Q8 = 4,
}
