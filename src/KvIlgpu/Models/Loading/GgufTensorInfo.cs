namespace KvIlgpu.Models.Loading;

internal sealed record GgufTensorInfo(string Name, ulong[] Dims, uint Type, ulong Offset);
