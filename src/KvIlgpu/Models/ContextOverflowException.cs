namespace KvIlgpu.Models;

/// <summary>More tokens than the model's context (or the cache) holds.</summary>
public sealed class ContextOverflowException(int needed, int capacity)
    : Exception($"the sequence needs {needed} positions but the context holds {capacity}")
{
    /// <summary>Positions the sequence needs.</summary>
    public int Needed { get; } = needed;
    /// <summary>Positions the context (or the cache) holds.</summary>
    public int Capacity { get; } = capacity;
}
