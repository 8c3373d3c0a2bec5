namespace KvIlgpu.Models;

/// <summary>RoPE frequency scaling as Hugging Face's config.json states it (rope_scaling).</summary>
/// <param name="Type">"llama3" or "linear".</param>
public sealed record RopeScaling(
    string Type,
    float Factor,
    float LowFreqFactor = 1f,
    float HighFreqFactor = 4f,
    int OriginalMaxPositionEmbeddings = 8192);
