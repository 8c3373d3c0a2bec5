namespace KvIlgpu.Compression;

/// <summary>How many KVs must go.</summary>
/// <param name="MaxCacheTokens">Per-head average budget: the sequence keeps at most MaxCacheTokens * heads KVs.</param>
/// <param name="KeepRate">Alternatively, keep this fraction of the evictable (unprotected) KVs.</param>
/// <param name="ProtectedWindow">The most recent P positions are never evicted.</param>
/// <param name="Sinks">The first S positions are never evicted (attention sinks).</param>
/// <param name="MaxCacheBytes">Alternatively, the most bytes of KV blocks the sequence may hold: as many tokens per head as
/// that many bytes hold in the cache's layout (its storage type and widths; see <see cref="InTokens"/>).</param>
public sealed record EvictionBudget(int? MaxCacheTokens = null, double? KeepRate = null, int ProtectedWindow = 32, int Sinks = 0,
    long? MaxCacheBytes = null)
{
    /// <summary>Throws <see cref="InvalidOptionException"/> naming the first property that has a bad value.</summary>
    public void Validate()
    {
        int given = (MaxCacheTokens != null ? 1 : 0) + (KeepRate != null ? 1 : 0) + (MaxCacheBytes != null ? 1 : 0);
        if (given != 1)
            throw new InvalidOptionException(nameof(MaxCacheTokens),
                $"give exactly one of {nameof(MaxCacheTokens)}, {nameof(KeepRate)} or {nameof(MaxCacheBytes)}");
        if (MaxCacheTokens is < 1) throw new InvalidOptionException(nameof(MaxCacheTokens),
            $"{nameof(MaxCacheTokens)} must be >= 1 (got {MaxCacheTokens})");
        if (MaxCacheBytes is < 1) throw new InvalidOptionException(nameof(MaxCacheBytes),
            $"{nameof(MaxCacheBytes)} must be >= 1 (got {MaxCacheBytes})");
        if (KeepRate is not null and (< 0 or > 1 or double.NaN))
            throw new InvalidOptionException(nameof(KeepRate), $"{nameof(KeepRate)} must be in [0, 1] (got {KeepRate})");
        if (ProtectedWindow < 0) throw new InvalidOptionException(nameof(ProtectedWindow),
            $"{nameof(ProtectedWindow)} must be >= 0 (got {ProtectedWindow})");
        if (Sinks < 0) throw new InvalidOptionException(nameof(Sinks), $"{nameof(Sinks)} must be >= 0 (got {Sinks})");
    }

    /// <summary>This budget with a bytes budget turned into tokens: a sequence keeps at most MaxCacheBytes / (heads x
    /// bytesPerToken) tokens per head on average (at least one), heads its cached (layer, KV head)s and bytesPerToken what
    /// one token of one head holds. Other budgets come back as they are.</summary>
    public EvictionBudget InTokens(int bytesPerToken, int heads) => MaxCacheBytes is long bytes
        ? this with { MaxCacheTokens = (int)Math.Clamp(bytes / ((long)bytesPerToken * heads), 1, int.MaxValue), MaxCacheBytes = null }
        : this;
}
