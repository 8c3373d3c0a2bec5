namespace KvIlgpu.Models.Loading;

/// <summary>One entry of a safetensors header.</summary>
internal sealed record SafetensorsEntry(string Name, string DType, long[] Shape, long Begin, long End);
