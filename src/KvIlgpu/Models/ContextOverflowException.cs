using KvIlgpu.Cache;
using KvIlgpu.Compute;

namespace KvIlgpu.Models;

/// <summary>More tokens than the model's context (or the cache) holds.</summary>
public sealed class ContextOverflowException(int needed, int capacity)
    : Exception($"the sequence needs {needed} positions but the context holds {capacity}")
{
    public int Needed { get; } = needed;
    public int Capacity { get; } = capacity;
}
