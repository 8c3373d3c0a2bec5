namespace KvIlgpu.Models.Loading;

/// <summary>How far a model load has come, in bytes of tensor data.</summary>
public readonly record struct LoadProgress(string Stage, long BytesDone, long BytesTotal);
