namespace KvIlgpu.Evaluation;

/// <summary>KVs that runs would hold with a full cache, and the KVs they held after eviction, summed over runs.</summary>
public sealed class KvTally
{
    /// <summary>KVs the runs would hold with the full cache.</summary>
    public long Full { get; private set; }
    /// <summary>KVs the runs held after eviction.</summary>
    public long Held { get; private set; }
    /// <summary>Full over held.</summary>
    public double CompressionRatio => Full / (double)Math.Max(1, Held);

    /// <summary>One sequence of the given length across heads (layer, KV head) pairs, of which evicted KVs were dropped.</summary>
    public void Add(long heads, long length, long evicted)
    {
        Full += heads * length;
        Held += heads * length - evicted;
    }
}
