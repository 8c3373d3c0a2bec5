using KvIlgpu.Cache;
using KvIlgpu.Compression;

namespace KvIlgpu.Tests.Compression.Selection;

public class CrossHeadChunkSelectionTests
{
    /// <summary>SPEC 3 written another way: each head's chunks in order with their scores, then a k-way merge that
    /// repeatedly takes the cheapest next chunk of any head (ties: lower head). Because a head's chunk scores never
    /// decrease, this takes the same chunks as one global sort. A head's chunk is its own tokens per block.</summary>
    internal static int[][] Reference(IReadOnlyList<HeadSlots> heads, int seqLen, EvictionBudget budget)
    {
        int B(int head) => heads[head].TokensPerBlock;
        var sorted = new List<int>[heads.Count];
        var scores = new List<float>[heads.Count];
        int total = 0, evictable = 0;
        for (int i = 0; i < heads.Count; i++)
        {
            var hs = heads[i];
            int b = B(i);
            bool Protected(int t) => hs.Positions[t] >= seqLen - budget.ProtectedWindow || hs.Positions[t] < budget.Sinks;
            var m = Enumerable.Range(0, hs.Length).Select(t => Protected(t) ? float.PositiveInfinity : hs.Metric[t]).ToArray();
            total += hs.Length;
            evictable += Enumerable.Range(0, hs.Length).Count(t => !Protected(t));
            sorted[i] = Enumerable.Range(0, hs.Length).OrderBy(t => m[t]).ThenBy(t => t).ToList();
            scores[i] = [];
            int lastFill = hs.Length % b == 0 ? b : hs.Length % b;
            for (int freed = 1; hs.Length > 0 && (freed - 1) * b + lastFill <= hs.Length; freed++)
                scores[i].Add(m[sorted[i][(freed - 1) * b + lastFill - 1]]);
        }
        long needed = budget.MaxCacheTokens is int per ? total - (long)per * heads.Count
            : evictable - (long)Math.Ceiling(budget.KeepRate!.Value * evictable);
        var taken = new int[heads.Count];
        long evicted = 0;
        while (evicted < needed)
        {
            int best = -1;
            for (int i = 0; i < heads.Count; i++)
                if (taken[i] < scores[i].Count && !float.IsPositiveInfinity(scores[i][taken[i]]) &&
                    (best < 0 || scores[i][taken[i]] < scores[best][taken[best]]))
                    best = i;
            if (best < 0) break;
            int b = B(best), lastFill = heads[best].Length % b == 0 ? b : heads[best].Length % b;
            evicted += taken[best] == 0 ? lastFill : b;
            taken[best]++;
        }
        return Enumerable.Range(0, heads.Count).Select(i =>
        {
            int b = B(i), lastFill = heads[i].Length % b == 0 ? b : heads[i].Length % b;
            return sorted[i].Take(taken[i] == 0 ? 0 : (taken[i] - 1) * b + lastFill).ToArray();
        }).ToArray();
    }

    /// <summary>Random heads as eviction finds them, blockSize tokens a block; with mixedBlocks each holds its own number of
    /// tokens per block instead, as heads of different widths do.</summary>
    internal static List<HeadSlots> RandomHeads(Random rng, int count, int seqLen, bool ties, int blockSize, bool mixedBlocks = false)
    {
        return Enumerable.Range(0, count).Select(i =>
        {
            int n = rng.Next(0, seqLen + 1);
            // After eviction a head holds a subset of positions in any order.
            var positions = Enumerable.Range(0, seqLen).OrderBy(_ => rng.Next()).Take(n).ToArray();
            var metric = positions.Select(_ => ties ? rng.Next(0, 4) * 0.25f : (float)rng.NextDouble()).ToArray();
            return new HeadSlots(i / 2, i % 2, metric, positions, mixedBlocks ? rng.Next(1, 40) : blockSize);
        }).ToList();
    }

    [Theory]
    [InlineData(1, 4, false, false)]
    [InlineData(2, 16, false, false)]
    [InlineData(3, 4, true, false)]
    [InlineData(4, 8, true, false)]
    [InlineData(5, 16, false, true)]
    [InlineData(6, 16, true, true)]
    public void Plan_selects_exactly_the_reference_set_and_keeps_its_promises(int seed, int defaultBlockSize, bool ties,
        bool mixedBlocks)
    {
        var rng = new Random(seed);
        for (int trial = 0; trial < 200; trial++)
        {
            int seqLen = rng.Next(1, 120), headCount = rng.Next(1, 9);
            var heads = RandomHeads(rng, headCount, seqLen, ties, defaultBlockSize, mixedBlocks);
            int blockSize = heads.Max(h => h.TokensPerBlock);
            var budget = rng.Next(2) == 0
                ? new EvictionBudget(MaxCacheTokens: rng.Next(1, seqLen + 1), ProtectedWindow: rng.Next(0, 20), Sinks: rng.Next(0, 4))
                : new EvictionBudget(KeepRate: rng.NextDouble(), ProtectedWindow: rng.Next(0, 20), Sinks: rng.Next(0, 4));
            var plan = CrossHeadChunkSelection.Plan(heads, seqLen, budget);
            var expected = Reference(heads, seqLen, budget);
            for (int i = 0; i < headCount; i++)
            {
                int b = heads[i].TokensPerBlock;
                Assert.Equal(expected[i], plan.Evicted[i]);
                // The protected window and the sinks are never evicted.
                foreach (var t in plan.Evicted[i])
                    Assert.True(heads[i].Positions[t] < seqLen - budget.ProtectedWindow && heads[i].Positions[t] >= budget.Sinks);
                // Whole blocks are freed: what remains fills whole blocks but the last.
                int kept = heads[i].Length - plan.Evicted[i].Length;
                Assert.Equal((heads[i].Length + b - 1) / b - (kept + b - 1) / b == 0 ? 0 : 1,
                    plan.Evicted[i].Length == 0 ? 0 : 1);
            }
            if (budget.MaxCacheTokens is int per)
            {
                int total = heads.Sum(h => h.Length), keptTotal = total - plan.TotalEvicted;
                int protectedCount = heads.Sum(h => h.Positions.Count(p => p >= seqLen - budget.ProtectedWindow || p < budget.Sinks));
                // The budget holds, unless protected KVs alone exceed it; and it overshoots by less than a block per head.
                Assert.True(keptTotal <= per * headCount || plan.TotalEvicted >= total - protectedCount - blockSize * headCount,
                    $"kept {keptTotal} > budget {per * headCount}");
                Assert.True(keptTotal > per * headCount - blockSize * headCount || plan.TotalEvicted == 0,
                    $"evicted far past the budget: kept {keptTotal}, budget {per * headCount}");
            }
        }
    }
}
