namespace KvIlgpu.Compression;

/// <summary>How many KVs must go.</summary>
/// <param name="MaxCacheTokens">Per-head average budget: the sequence keeps at most MaxCacheTokens * heads KVs.</param>
/// <param name="KeepRate">Alternatively, keep this fraction of the evictable (unprotected) KVs.</param>
/// <param name="ProtectedWindow">The most recent P positions are never evicted.</param>
/// <param name="Sinks">The first S positions are never evicted (attention sinks).</param>
public sealed record EvictionBudget(int? MaxCacheTokens = null, double? KeepRate = null, int ProtectedWindow = 32, int Sinks = 0)
{
    /// <summary>Throws <see cref="InvalidOptionException"/> naming the first property that has a bad value.</summary>
    public void Validate()
    {
        if ((MaxCacheTokens == null) == (KeepRate == null))
            throw new InvalidOptionException(nameof(MaxCacheTokens), $"give exactly one of {nameof(MaxCacheTokens)} or {nameof(KeepRate)}");
        if (MaxCacheTokens is < 1) throw new InvalidOptionException(nameof(MaxCacheTokens),
            $"{nameof(MaxCacheTokens)} must be >= 1 (got {MaxCacheTokens})");
        if (KeepRate is not null and (< 0 or > 1 or double.NaN))
            throw new InvalidOptionException(nameof(KeepRate), $"{nameof(KeepRate)} must be in [0, 1] (got {KeepRate})");
        if (ProtectedWindow < 0) throw new InvalidOptionException(nameof(ProtectedWindow),
            $"{nameof(ProtectedWindow)} must be >= 0 (got {ProtectedWindow})");
        if (Sinks < 0) throw new InvalidOptionException(nameof(Sinks), $"{nameof(Sinks)} must be >= 0 (got {Sinks})");
    }
}
