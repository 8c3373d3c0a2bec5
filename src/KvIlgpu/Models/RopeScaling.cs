namespace KvIlgpu.Models;

/// <summary>RoPE frequency scaling as Hugging Face's config.json states it (rope_scaling).</summary>
/// <param name="Type">"llama3" or "linear".</param>
/// <param name="Factor">How much longer than the original the context is.</param>
/// <param name="LowFreqFactor">llama3: wavelengths longer than original / LowFreqFactor are scaled by Factor.</param>
/// <param name="HighFreqFactor">llama3: wavelengths shorter than original / HighFreqFactor are kept.</param>
/// <param name="OriginalMaxPositionEmbeddings">The context the model was first trained for.</param>
public sealed record RopeScaling(
    string Type,
    float Factor,
    float LowFreqFactor = 1f,
    float HighFreqFactor = 4f,
    int OriginalMaxPositionEmbeddings = 8192);
