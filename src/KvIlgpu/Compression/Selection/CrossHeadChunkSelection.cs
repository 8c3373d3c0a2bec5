using KvIlgpu.Cache;
using KvIlgpu.Compute;

namespace KvIlgpu.Compression;

/// <summary>Block-granular eviction ranked across all heads and layers of a sequence (SPEC 3):
/// 1. slots in the protected window and the sinks get metric +infinity;
/// 2. per head, slots sorted by metric ascending are cut into chunks of the head's own tokens per block B (heads of
///    narrower widths hold more tokens in a block); since the head's last block holds only h slots, freeing j+1 blocks
///    evicts j*B + h KVs, and chunk j's score is the metric at sorted index j*B + h - 1;
/// 3. all chunks of the sequence are ranked together by score and the lowest are evicted until the budget holds, so
///    each head loses a prefix of its own sorted list.
/// Ties go to the lower slot index, then the lower head, then the lower chunk, so plans are deterministic.</summary>
internal sealed class CrossHeadChunkSelection : ISelectionRule
{
    /// <inheritdoc/>
    public bool BoundsSequenceTotal => true;

    /// <inheritdoc/>
    public EvictionPlan Select(IReadOnlyList<HeadSlots> heads, SelectionContext context) =>
        Plan(heads, context.SequenceLength, context.Budget);

    /// <inheritdoc/>
    public EvictionPlan? SelectOnDevice(IDeviceEvictionPlanner planner, PagedKvCache cache, int sequence, SelectionContext context) =>
        planner.PlanChunks(cache.Buffers, cache.Head(sequence, 0, 0), HeadLengths(cache, sequence), cache.TokensPerBlock(),
            context.SequenceLength - context.Budget.ProtectedWindow,
            context.Budget.Sinks, context.Budget.MaxCacheTokens, context.Budget.KeepRate, context.Average) is { } evicted
            ? new EvictionPlan(evicted) : null;

    private static int[] HeadLengths(PagedKvCache cache, int sequence) =>
        [.. Enumerable.Range(0, cache.Layout.Layers).SelectMany(l => Enumerable.Range(0, cache.Layout.KvHeads).Select(h =>
            cache.Length(sequence, l, h)))];

    private readonly record struct Chunk(float Score, int Head, int Index, int Evicts);

    /// <summary>The plan for the heads of one sequence (their metrics, in slot order).</summary>
    /// <param name="heads">Every head of the sequence.</param>
    /// <param name="budget">How many KVs may stay, and which are protected.</param>
    /// <param name="sequenceLength">Tokens the sequence has seen (positions 0 .. sequenceLength-1).</param>
    public static EvictionPlan Plan(IReadOnlyList<HeadSlots> heads, int sequenceLength, EvictionBudget budget)
    {
        budget.Validate();
        int recentFrom = sequenceLength - budget.ProtectedWindow;
        var order = new int[heads.Count][];
        var chunks = new List<Chunk>();
        int total = 0, evictable = 0;
        for (int hi = 0; hi < heads.Count; hi++)
        {
            var head = heads[hi];
            int n = head.Length, blockSize = head.TokensPerBlock;
            total += n;
            var metric = new float[n];
            for (int t = 0; t < n; t++)
            {
                bool protect = head.Positions[t] >= recentFrom || head.Positions[t] < budget.Sinks;
                metric[t] = protect ? float.PositiveInfinity : head.Metric[t];
                if (!protect) evictable++;
            }
            var idx = Enumerable.Range(0, n).ToArray();
            Array.Sort(idx, (a, b) => metric[a] != metric[b] ? metric[a].CompareTo(metric[b]) : a.CompareTo(b));
            order[hi] = idx;
            if (n == 0) continue;
            int h = n % blockSize == 0 ? blockSize : n % blockSize;
            for (int j = 0; j * blockSize + h - 1 < n; j++)
            {
                float score = metric[idx[j * blockSize + h - 1]];
                if (float.IsPositiveInfinity(score)) break; // this chunk and every later one would evict protected KVs
                chunks.Add(new Chunk(score, hi, j, j == 0 ? h : blockSize));
            }
        }
        long needed = budget.MaxCacheTokens is int perHead
            ? total - (long)perHead * heads.Count
            : evictable - (long)Math.Ceiling(budget.KeepRate!.Value * evictable);
        var taken = new int[heads.Count]; // chunks taken per head
        long evicted = 0;
        foreach (var c in chunks.OrderBy(c => c.Score).ThenBy(c => c.Head).ThenBy(c => c.Index))
        {
            if (evicted >= needed) break;
            taken[c.Head]++;
            evicted += c.Evicts;
        }
        var result = new int[heads.Count][];
        for (int hi = 0; hi < heads.Count; hi++)
        {
            int n = heads[hi].Length, blockSize = heads[hi].TokensPerBlock;
            int h = n % blockSize == 0 ? blockSize : n % blockSize;
            int count = taken[hi] == 0 ? 0 : (taken[hi] - 1) * blockSize + h;
            result[hi] = order[hi][..count];
        }
        return new EvictionPlan(result);
    }
}
