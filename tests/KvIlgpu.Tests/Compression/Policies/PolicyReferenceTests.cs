using KvIlgpu.Cache;
using KvIlgpu.Compression;
using KvIlgpu.Tests.Compression.Selection;

namespace KvIlgpu.Tests.Compression.Policies;

/// <summary>Every registered policy against a plain reference written from its paper's description, on random heads
/// (lengths, positions left after earlier evictions, metrics with and without ties), budgets (per-head token counts and
/// keep rates), protected windows and sinks. The references decide slot by slot by counting ranks, not by sorting and
/// cutting as the policies do.</summary>
public class PolicyReferenceTests
{
    /// <summary>(score, slot) order: a slot's rank among a head's evictable slots, lowest first.</summary>
    private static int Rank(Func<int, float> score, IEnumerable<int> evictable, int t) =>
        evictable.Count(u => score(u) < score(t) || (score(u) == score(t) && u < t));

    private static bool IsProtected(HeadSlots h, int t, int seqLen, EvictionBudget budget, int sinks) =>
        h.Positions[t] >= seqLen - budget.ProtectedWindow || h.Positions[t] < Math.Max(sinks, budget.Sinks);

    /// <summary>Per-head keep count of a uniform budget: the token budget, or the protected KVs plus the kept share of
    /// the evictable ones.</summary>
    private static int UniformKeep(HeadSlots h, int seqLen, EvictionBudget budget, int sinks)
    {
        int evictable = Enumerable.Range(0, h.Length).Count(t => !IsProtected(h, t, seqLen, budget, sinks));
        return budget.MaxCacheTokens ?? h.Length - evictable + (int)Math.Ceiling(budget.KeepRate!.Value * evictable);
    }

    /// <summary>A head keeps `keep` KVs: protected ones always; of the rest, those ranked lowest go first.</summary>
    private static int[] EvictLowest(HeadSlots h, int keep, int seqLen, EvictionBudget budget, int sinks, Func<int, float> score)
    {
        var evictable = Enumerable.Range(0, h.Length).Where(t => !IsProtected(h, t, seqLen, budget, sinks)).ToList();
        int excess = Math.Max(0, h.Length - keep);
        return evictable.Where(t => Rank(score, evictable, t) < excess).ToArray();
    }

    private static int[][] Reference(string policy, IReadOnlyList<HeadSlots> heads, int seqLen, EvictionBudget budget, int layers)
    {
        int sinks = policy == "streamingllm" ? 4 : 0;
        switch (policy)
        {
            case "full": // keeps everything
                return [.. heads.Select(_ => Array.Empty<int>())];
            case "kvcompress":
                return CrossHeadChunkSelectionTests.Reference(heads, seqLen, budget);
            case "kvcompress-layer": // SPEC 3 within each layer, each layer held to the per-head budget on its own
                {
                    var result = new int[heads.Count][];
                    foreach (var layer in heads.Select((h, i) => (h, i)).GroupBy(x => x.h.Layer))
                    {
                        var members = layer.ToList();
                        var plan = CrossHeadChunkSelectionTests.Reference(members.Select(x => x.h).ToList(), seqLen, budget);
                        for (int k = 0; k < members.Count; k++) result[members[k].i] = plan[k];
                    }
                    return result;
                }
            case "streamingllm": // sinks + the most recent: the oldest positions go first
                return heads.Select(h => EvictLowest(h, UniformKeep(h, seqLen, budget, sinks), seqLen, budget, sinks, t =>
                    h.Positions[t])).ToArray();
            case "h2o" or "snapkv" or "kvcompress-uniform": // the same budget per head, lowest metric first
                return heads.Select(h => EvictLowest(h, UniformKeep(h, seqLen, budget, sinks), seqLen, budget, sinks, t =>
                    h.Metric[t])).ToArray();
            case "pyramidkv": // budgets falling linearly from 1.5x at the first layer to 0.5x at the last
                return heads.Select(h =>
                {
                    double scale = layers == 1 ? 1 : 1.5 - h.Layer / (double)(layers - 1);
                    return EvictLowest(h, (int)Math.Round(UniformKeep(h, seqLen, budget, sinks) * scale), seqLen, budget, sinks, t =>
                        h.Metric[t]);
                }).ToArray();
            case "adakv":
                return AdaKvReference(heads, seqLen, budget);
            default:
                throw new InvalidOperationException($"no reference for policy {policy}: add one");
        }
    }

    /// <summary>Ada-KV's floor: a fifth of each head's uniform budget (the paper's choice).</summary>
    private const double AdaKvFloor = 0.2;

    /// <summary>Ada-KV: a layer's budget (sum of its heads' uniform budgets) is handed out one KV at a time: first each
    /// head's floor (20% of its uniform budget) of its best KVs, then the best remaining KV of any head of the layer
    /// (ties: lower head, then that head's better rank), until the budget is spent.</summary>
    private static int[][] AdaKvReference(IReadOnlyList<HeadSlots> heads, int seqLen, EvictionBudget budget)
    {
        var keep = new int[heads.Count];
        foreach (var layer in Enumerable.Range(0, heads.Count).GroupBy(i => heads[i].Layer))
        {
            var members = layer.ToList();
            var evictable = members.ToDictionary(i => i, i => Enumerable.Range(0, heads[i].Length).Where(t => !IsProtected(heads[i], t,
                seqLen, budget, 0)).ToList());
            // Each head's evictable KVs best first (score descending, then slot).
            var best = members.ToDictionary(i => i, i => evictable[i].OrderByDescending(t => heads[i].Metric[t]).ThenBy(t => t).ToList());
            int left = members.Sum(i => UniformKeep(heads[i], seqLen, budget, 0));
            var given = members.ToDictionary(i => i, _ => 0);
            foreach (var i in members)
            {
                keep[i] = heads[i].Length - evictable[i].Count;
                left -= keep[i];
            }
            foreach (var i in members)
            {
                int floor = Math.Min((int)Math.Floor(AdaKvFloor * UniformKeep(heads[i], seqLen, budget, 0)), best[i].Count);
                given[i] = floor;
                left -= floor;
            }
            while (left > 0)
            {
                int pick = -1;
                foreach (var i in members)
                    if (given[i] < best[i].Count && (pick < 0
                        || heads[i].Metric[best[i][given[i]]] > heads[pick].Metric[best[pick][given[pick]]]))
                        pick = i;
                if (pick < 0) break;
                given[pick]++;
                left--;
            }
            foreach (var i in members) keep[i] += given[i];
        }
        return heads.Select((h, i) => EvictLowest(h, keep[i], seqLen, budget, 0, t => h.Metric[t])).ToArray();
    }

    public static TheoryData<string> AllPolicies() => new(EvictionPolicies.All.Keys);

    [Theory]
    [MemberData(nameof(AllPolicies))]
    public void Policy_evicts_exactly_the_reference_set(string name)
    {
        var policy = EvictionPolicies.All[name];
        var rng = new Random(name.Length * 7919 + name[0]);
        for (int trial = 0; trial < 300; trial++)
        {
            int seqLen = rng.Next(1, 100), layers = rng.Next(1, 5), blockSize = new[] { 1, 4, 8, 16 }[rng.Next(4)];
            var heads = CrossHeadChunkSelectionTests.RandomHeads(rng, layers * 2, seqLen, ties: trial % 2 == 0, blockSize,
                mixedBlocks: trial % 3 == 0);
            var budget = rng.Next(2) == 0
                ? new EvictionBudget(MaxCacheTokens: rng.Next(1, seqLen + 2), ProtectedWindow: rng.Next(0, 12), Sinks: rng.Next(0, 3))
                : new EvictionBudget(KeepRate: rng.NextDouble(), ProtectedWindow: rng.Next(0, 12), Sinks: rng.Next(0, 3));
            var actual = policy.Plan(heads, seqLen, budget, layers);
            var expected = Reference(name, heads, seqLen, budget, layers);
            for (int i = 0; i < heads.Count; i++)
                Assert.True(expected[i].Order().SequenceEqual(actual.Evicted[i].Order()),
                    $"{name}, trial {trial}, head {i}: expected [{string.Join(",", expected[i].Order())}] got " +
                        $"[{string.Join(",", actual.Evicted[i].Order())}]");
        }
    }

    [Fact]
    public void The_average_metric_divides_by_the_queries_that_could_see_each_kv()
    {
        // Prompt of 10 tokens, window 4 (queries at 6..9), then 3 decode queries (positions 10, 11, 12): length 13.
        var head = new HeadSlots(0, 0, [7f, 10f, 4f, 6f], [2, 8, 11, 12], TokensPerBlock: 4);
        var options = new CompressionOptions(new EvictionBudget(MaxCacheTokens: 2), "kvcompress", ObservationWindow: 4, Average: true);
        var averaged = SequenceCompressor.Averaged(head, sequenceLength: 13, promptLength: 10, options);
        // position 2: 4 window + 3 decode; 8: 2 window (8, 9) + 3; 11: decode 11, 12; 12: decode 12.
        Assert.Equal([7f / 7, 10f / 5, 4f / 2, 6f / 1], averaged.Metric);
        // SnapKV does not accumulate during decode: only the window counts, and generated tokens count as seen once.
        var snap = SequenceCompressor.Averaged(head, 13, 10, options with { Policy = "snapkv" });
        Assert.Equal([7f / 4, 10f / 2, 4f, 6f], snap.Metric);
    }
}
