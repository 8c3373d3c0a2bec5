namespace KvIlgpu.Compression;

/// <summary>How many KVs must go.</summary>
/// <param name="MaxCacheTokens">Per-head average budget: the sequence keeps at most MaxCacheTokens * heads KVs.</param>
/// <param name="KeepRate">Alternatively, keep this fraction of the evictable (unprotected) KVs.</param>
/// <param name="ProtectedWindow">The most recent P positions are never evicted.</param>
/// <param name="Sinks">The first S positions are never evicted (attention sinks).</param>
public sealed record EvictionBudget(int? MaxCacheTokens = null, double? KeepRate = null, int ProtectedWindow = 32, int Sinks = 0)
{
    public void Validate()
    {
        if ((MaxCacheTokens == null) == (KeepRate == null)) throw new ArgumentException("give exactly one of --kv-budget or --kv-keep-rate");
        if (MaxCacheTokens is < 1) throw new ArgumentOutOfRangeException(nameof(MaxCacheTokens), $"--kv-budget must be >= 1 (got {MaxCacheTokens})");
        if (KeepRate is < 0 or > 1) throw new ArgumentOutOfRangeException(nameof(KeepRate), $"--kv-keep-rate must be in [0, 1] (got {KeepRate})");
        if (ProtectedWindow < 0) throw new ArgumentOutOfRangeException(nameof(ProtectedWindow), $"--protected-window must be >= 0 (got {ProtectedWindow})");
        if (Sinks < 0) throw new ArgumentOutOfRangeException(nameof(Sinks), $"--kv-sinks must be >= 0 (got {Sinks})");
    }
}
