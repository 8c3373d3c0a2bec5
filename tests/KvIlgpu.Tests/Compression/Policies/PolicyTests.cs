using KvIlgpu.Cache;
using KvIlgpu.Compression;
using KvIlgpu.Compute;
using KvIlgpu.Engine;
using KvIlgpu.Tests.Support;

namespace KvIlgpu.Tests.Compression.Policies;

public class PolicyTests
{
    public static TheoryData<string> AllPolicies() => new(EvictionPolicies.All.Keys);

    /// <summary>The same invariants for every registered policy on random heads: valid distinct slots, the protected
    /// window and sinks kept, the budget held (per head for per-head policies; on average within a block per head for
    /// KV-Compress); and once compacted on a real cache, every freed block is back in the pool.</summary>
    [Theory]
    [MemberData(nameof(AllPolicies))]
    public void Every_policy_keeps_protection_holds_the_budget_and_returns_blocks(string name)
    {
        var policy = EvictionPolicies.All[name];
        var rng = new Random(name.Sum(c => c) * 31 + name.Length); // string.GetHashCode differs per process
        int b = 4, layers = 2, kvHeads = 2;
        var config = TestModels.Config(dim: 32, heads: 4, kvHeads: kvHeads, layers: layers, seq: 96);
        for (int trial = 0; trial < 40; trial++)
        {
            int seqLen = rng.Next(10, 90);
            using var cache = new PagedKvCache(Backends.Get("cpu"), config, new PagedCacheOptions(MemoryBytes: 300_000, BlockSize: b,
                MaxSequences: 1));
            int seq = cache.TryAddSequence()!.Value;
            Assert.True(cache.TryReserve(seq, seqLen));
            cache.Append(seq, seqLen);
            var metric = Enumerable.Range(0, cache.Pool.Total * b).Select(_ => (float)rng.NextDouble()).ToArray();
            var positions = new int[cache.Pool.Total * b];
            for (int l = 0; l < layers; l++)
                for (int h = 0; h < kvHeads; h++)
                    for (int t = 0; t < seqLen; t++) positions[cache.PhysicalSlot(seq, l, h, t)] = t;
            Backends.Get("cpu").Write(cache.Buffers.Metric, metric);
            Backends.Get("cpu").WriteInts(cache.Buffers.Positions, positions);
            var heads = cache.ReadHeads(seq);
            var budget = new EvictionBudget(MaxCacheTokens: rng.Next(4, 40), ProtectedWindow: rng.Next(0, 8), Sinks: rng.Next(0, 2));
            var plan = policy.Plan(heads, seqLen, budget, layers);
            if (!policy.Evicts)
            {
                Assert.Equal(0, plan.TotalEvicted);
                continue;
            }

            int sinks = Math.Max(budget.Sinks, policy.Sinks);
            for (int i = 0; i < heads.Count; i++)
            {
                Assert.Equal(plan.Evicted[i].Length, plan.Evicted[i].Distinct().Count());
                foreach (var t in plan.Evicted[i])
                {
                    Assert.InRange(t, 0, heads[i].Length - 1);
                    int p = heads[i].Positions[t];
                    Assert.True(p < seqLen - budget.ProtectedWindow && p >= (name == "kvcompress" ? budget.Sinks : sinks),
                        $"{name} evicted protected position {p}");
                }
            }
            int protectedPerHead = Enumerable.Range(0, seqLen).Count(p => p >= seqLen - budget.ProtectedWindow || p < sinks);
            int kept = heads.Sum(h => h.Length) - plan.TotalEvicted;
            int limit = budget.MaxCacheTokens!.Value * heads.Count;
            if (name is "kvcompress" or "kvcompress-layer") // block-granular: within one block per head
                Assert.True(kept <= Math.Max(limit, protectedPerHead * heads.Count + b * heads.Count),
                    $"{name}: kept {kept} > budget {limit}");
            else
                Assert.True(kept <= Math.Max(limit * 1.5, protectedPerHead * heads.Count) + heads.Count,
                    $"{name}: kept {kept} for budget {limit}");

            Compactor.Apply(cache, seq, heads, plan);
            cache.CheckInvariants();
            Assert.Equal(Enumerable.Range(0, layers).Sum(l => Enumerable.Range(0, kvHeads).Sum(h => (cache.Length(seq, l, h)
                + b - 1) / b)), cache.Pool.Used);
        }
    }

    private static HeadSlots Head(int layer, int kvHead, float[] metric) => new(layer, kvHead, metric, Enumerable.Range(0,
        metric.Length).ToArray(), TokensPerBlock: 4);

    [Fact]
    public void A_policy_spec_names_the_policy_and_optionally_its_metric_variant()
    {
        var budget = new EvictionBudget(64);
        // kvcompress defaults to the squared-average metric (the team's decision); kvcompress:squared is the SPEC's sum.
        var byDefault = CompressionOptions.ForPolicy("kvcompress", budget);
        Assert.Equal(("kvcompress", true, true), (byDefault.Policy, byDefault.EffectiveSquared, byDefault.EffectiveAverage));
        var sum = CompressionOptions.ForPolicy("kvcompress:squared", budget);
        Assert.Equal(("kvcompress", true, false), (sum.Policy, sum.EffectiveSquared, sum.EffectiveAverage));
        var variant = CompressionOptions.ForPolicy("kvcompress:plain-average", budget);
        Assert.Equal(("kvcompress", false, true), (variant.Policy, variant.EffectiveSquared, variant.EffectiveAverage));
        var h2o = CompressionOptions.ForPolicy("h2o:squared", budget);
        Assert.Equal(("h2o", true, false), (h2o.Policy, h2o.EffectiveSquared, h2o.EffectiveAverage));
        Assert.False(CompressionOptions.ForPolicy("snapkv", budget).EffectiveAverage);
        Assert.Contains("cubed", Assert.Throws<InvalidOptionException>(() => CompressionOptions.ForPolicy("kvcompress:cubed",
            budget)).Message);
        Assert.Contains("nope", Assert.Throws<InvalidOptionException>(() => CompressionOptions.ForPolicy("nope", budget)).Message);
    }

    [Fact]
    public void StreamingLlm_keeps_the_four_sinks_and_the_most_recent_tokens()
    {
        var metric = Enumerable.Range(0, 40).Select(i => (float)(i * 7 % 13)).ToArray();
        var plan = EvictionPolicies.All["streamingllm"].Plan([Head(0, 0, metric)], 40, new EvictionBudget(MaxCacheTokens: 12,
            ProtectedWindow: 2), 1);
        var keptPositions = Enumerable.Range(0, 40).Except(plan.Evicted[0]).OrderBy(p => p).ToArray();
        Assert.Equal([0, 1, 2, 3, 32, 33, 34, 35, 36, 37, 38, 39], keptPositions);
    }

    [Fact]
    public void Uniform_baselines_keep_each_heads_top_scores_and_pyramid_shrinks_with_depth()
    {
        var rng = new Random(3);
        var heads = Enumerable.Range(0, 4).Select(i => Head(i / 2, i % 2, Enumerable.Range(0, 30).Select(_ =>
            (float)rng.NextDouble()).ToArray())).ToList();
        var budget = new EvictionBudget(MaxCacheTokens: 10, ProtectedWindow: 0);
        foreach (var name in new[] { "snapkv", "h2o", "kvcompress-uniform" })
        {
            var plan = EvictionPolicies.All[name].Plan(heads, 30, budget, 2);
            for (int i = 0; i < 4; i++)
            {
                var expectedKept = heads[i].Metric.Select((m, t) => (m, t)).OrderByDescending(x => x.m).Take(10).Select(x =>
                    x.t).OrderBy(t => t);
                Assert.Equal(expectedKept, Enumerable.Range(0, 30).Except(plan.Evicted[i]).OrderBy(t => t));
            }
        }
        var pyramid = EvictionPolicies.All["pyramidkv"].Plan(heads, 30, budget, 2);
        Assert.Equal([15, 15, 5, 5], pyramid.Evicted.Select(e => 30 - e.Length).ToArray()); // 1.5x and 0.5x of 10
    }

    [Fact]
    public void AdaKv_gives_a_layers_budget_to_its_strongest_head_above_a_floor()
    {
        // Head 0 has all the high scores of layer 0; head 1 only low ones.
        var strong = Enumerable.Range(0, 20).Select(i => 10f + i).ToArray();
        var weak = Enumerable.Range(0, 20).Select(i => i * 0.01f).ToArray();
        var plan = EvictionPolicies.All["adakv"].Plan([Head(0, 0, strong), Head(0, 1, weak)], 20,
            new EvictionBudget(MaxCacheTokens: 10, ProtectedWindow: 0), 1);
        int keptStrong = 20 - plan.Evicted[0].Length, keptWeak = 20 - plan.Evicted[1].Length;
        Assert.Equal(20, keptStrong + keptWeak); // the layer's budget: 10 per head x 2 heads
        Assert.Equal(2, keptWeak);              // only its floor (20% of 10), its two best
        Assert.Equal([18, 19], Enumerable.Range(0, 20).Except(plan.Evicted[1]).ToArray());
    }

    [Theory]
    [MemberData(nameof(AllPolicies))]
    public async Task Every_policy_runs_through_the_engine_and_bounds_memory(string name)
    {
        var w = TestModels.Random(TestModels.Config(vocab: 64, seq: 128), seed: 29);
        using var engine = InferenceEngine.FromWeights(w, new EngineOptions(DeviceKind.Cpu, KvMemoryBytes: 4 << 20, BlockSize: 8,
            MaxBatchSize: 4, MaxTokensPerStep: 64));
        var options = new GenerationOptions(30, SamplingOptions.Greedy, StopAtEos: false,
            new CompressionOptions(new EvictionBudget(MaxCacheTokens: 24, ProtectedWindow: 8), name));
        var ids = new List<int>();
        var handle = engine.Submit(Enumerable.Range(3, 60).ToArray(), options);
        await foreach (var t in handle.Tokens) ids.Add(t.Id);
        Assert.Equal(30, ids.Count);
        var result = await handle.Completion;
        if (EvictionPolicies.All[name].Evicts) Assert.True(result.EvictedKvs > 0);
        else Assert.Equal(0, result.EvictedKvs);
        Assert.Equal(engine.Stats.BlocksTotal, engine.Stats.BlocksFree);
    }
}
