using KvIlgpu.Cache;
using KvIlgpu.Compression;
using KvIlgpu.Compute;
using KvIlgpu.Engine;
using KvIlgpu.Models;
using KvIlgpu.Tests.Support;

namespace KvIlgpu.Tests.Compression;

[Collection("backends")]
public class MetricPipelineTests
{
    /// <summary>SPEC 2 end to end through the forward pass: the prefill metric (window queries' squared probabilities
    /// summed per query head, max-pooled with kernel 7, summed over the group) and then one decode step's accumulation,
    /// against the plain reference forward pass's own attention probabilities.</summary>
    [Theory]
    [InlineData("cpu", 5, 7)]
    [InlineData("ilgpu-cpu", 0, 3)]
    public void Prefill_window_metric_and_decode_accumulation_match_the_reference(string backendName, int window, int pool)
    {
        var c = TestModels.Config(dim: 48, heads: 6, kvHeads: 2, layers: 2, vocab: 50, seq: 64);
        var w = TestModels.Random(c, seed: 17);
        var options = new CompressionOptions(new EvictionBudget(MaxCacheTokens: 64, ProtectedWindow: 0), ObservationWindow: window,
            PoolKernel: pool);
        int[] prompt = [1, 9, 4, 33, 21, 7, 15, 2, 44, 30, 12, 5, 19, 8, 27, 3, 40, 11, 6, 25];
        int next = 13;
        lock (Backends.Lock)
        {
            var b = Backends.Get(backendName);
            using var model = new LlamaModel(w, b, maxChunkRows: 8);
            using var cache = new PagedKvCache(b, c, new PagedCacheOptions(MemoryBytes: 400_000, BlockSize: 4, MaxSequences: 2));
            int seq = cache.TryAddSequence()!.Value;
            Assert.True(cache.TryReserve(seq, prompt.Length + 1));
            var sums = new ObservationWindowMetric(c.Layers, c.Heads, prompt.Length);
            for (int start = 0; start < prompt.Length; start += 8) // three chunks: the window may straddle them
            {
                int n = Math.Min(8, prompt.Length - start);
                cache.Append(seq, n);
                var rows = Enumerable.Range(0, n).Select(i => new BatchRow(seq, prompt[start + i], start + i, n, i)).ToArray();
                var window_ = Enumerable.Range(0, n).Where(i => window == 0 || start + i >= prompt.Length - window)
                    .Select(i => (i, (Action<int, float[], int>)((layer, probs, stride) => sums.Add(layer, probs, stride, start + i + 1,
                        true)))).ToList();
                model.ForwardBatch(cache, rows, [], new MetricRequest(new MetricAccumulation[n], window_));
            }
            SequenceCompressor.SeedMetric(cache, seq, sums, options, c.GroupSize);

            // Reference: the same prompt through the plain forward pass, recording every query's probabilities.
            var reference = ReferenceLlama.From(w);
            var windowSums = new double[c.Layers, c.Heads, prompt.Length];
            for (int pos = 0; pos < prompt.Length; pos++)
            {
                reference.Step(prompt[pos]);
                if (window != 0 && pos < prompt.Length - window) continue;
                for (int l = 0; l < c.Layers; l++)
                    for (int h = 0; h < c.Heads; h++)
                        for (int t = 0; t <= pos; t++) windowSums[l, h, t] += Math.Pow(reference.LastProbabilities[l][h][t], 2);
            }
            var expected = new double[c.Layers, c.KvHeads, prompt.Length];
            for (int l = 0; l < c.Layers; l++)
                for (int h = 0; h < c.Heads; h++)
                    for (int t = 0; t < prompt.Length; t++)
                    {
                        double m = double.NegativeInfinity;
                        for (int j = Math.Max(0, t - pool / 2); j <= Math.Min(prompt.Length - 1, t + pool / 2); j++) m = Math.Max(m,
                            windowSums[l, h, j]);
                        expected[l, h / c.GroupSize, t] += m;
                    }
            var seeded = cache.ReadHeads(seq);
            foreach (var head in seeded)
                Compare.Close(head.Metric, Enumerable.Range(0, prompt.Length).Select(t => (float)expected[head.Layer, head.KvHead,
                    t]).ToArray(), 1e-4,
                    $"prefill metric, layer {head.Layer} head {head.KvHead}");

            // One decode step accumulates its own squared probabilities, summed over the group.
            cache.Append(seq, 1);
            model.ForwardBatch(cache, [new BatchRow(seq, next, prompt.Length, 1, 0)], [0], new MetricRequest([MetricAccumulation.Squared],
                []));
            reference.Step(next);
            foreach (var head in cache.ReadHeads(seq))
            {
                var exp = Enumerable.Range(0, prompt.Length + 1).Select(t =>
                {
                    double add = 0;
                    for (int q = head.KvHead * c.GroupSize; q < (head.KvHead
                        + 1) * c.GroupSize; q++) add += Math.Pow(reference.LastProbabilities[head.Layer][q][t], 2);
                    return (float)((t < prompt.Length ? expected[head.Layer, head.KvHead, t] : 0) + add);
                }).ToArray();
                Compare.Close(head.Metric, exp, 1e-4, $"decode metric, layer {head.Layer} head {head.KvHead}");
            }
        }
    }

    [Fact]
    public async Task KvCompress_with_a_budget_above_the_context_changes_nothing_and_a_small_budget_evicts_within_it()
    {
        var c = TestModels.Config(vocab: 64, seq: 128);
        var w = TestModels.Random(c, seed: 23);
        var prompt = Enumerable.Range(0, 60).Select(i => 3 + i % 60).ToArray();
        async Task<(int[] Ids, GenerationResult Result, SchedulerStats Stats)> Run(CompressionOptions? compression)
        {
            using var engine = InferenceEngine.FromWeights(w, new EngineOptions(DeviceKind.Cpu, KvMemoryBytes: 4 << 20, BlockSize: 8,
                MaxBatchSize: 2, MaxTokensPerStep: 64));
            var ids = new List<int>();
            var handle = engine.Submit(prompt, new GenerationOptions(40, SamplingOptions.Greedy, StopAtEos: false,
                Compression: compression));
            await foreach (var t in handle.Tokens) ids.Add(t.Id);
            var stats = engine.Stats;
            engine.Cache.CheckInvariants();
            return ([.. ids], await handle.Completion, stats);
        }
        var full = await Run(null);
        // The full cache's own usage in closed form: at the step giving token k (k = 0..39) each of the heads holds
        // 60 + k KVs in ceil((60 + k) / 8) blocks; the last token is never fed, so 99 KVs (13 blocks) at the end.
        int fullHeads = c.Layers * c.KvHeads;
        var usage = full.Result.KvUsage;
        Assert.Equal((40, 13 * fullHeads, 13 * fullHeads), (usage.Steps, usage.PeakBlocks, usage.BlocksHeld));
        Assert.Equal(Enumerable.Range(0, 40).Sum(k => (60 + k + 7) / 8 * (long)fullHeads), usage.BlockSteps);
        Assert.Equal(Enumerable.Repeat(60 + 19.5, c.Layers), usage.KeptPerLayer);
        Assert.Equal(2 * 8 * c.HeadDim * 4 + 8 * 8, usage.BytesPerBlock);
        Assert.Equal(0, usage.EvictedKvs);
        var generous = await Run(new CompressionOptions(new EvictionBudget(MaxCacheTokens: 128)));
        Assert.Equal(full.Ids, generous.Ids);
        Assert.Equal(0, generous.Result.EvictedKvs);

        var tight = await Run(new CompressionOptions(new EvictionBudget(MaxCacheTokens: 24, ProtectedWindow: 8)));
        Assert.Equal(40, tight.Ids.Length);
        int heads = c.Layers * c.KvHeads;
        // Every head ends near the budget: (60 + 40) tokens each, at most 24 on average kept plus less than a block.
        Assert.InRange(tight.Result.EvictedKvs, (100 - 24 - 8) * heads, (100 - 24) * heads);
        Assert.True(tight.Stats.PeakKvBytes < full.Stats.PeakKvBytes, $"{tight.Stats.PeakKvBytes} vs {full.Stats.PeakKvBytes}");
        // The tight run's heads hold at most the budget plus a block each once compressed, after every step.
        Assert.True(tight.Result.KvUsage.BlocksHeld <= (24 * heads + 8 * heads) / 8 + heads,
            $"{tight.Result.KvUsage.BlocksHeld} blocks held");
        Assert.All(tight.Result.KvUsage.KeptPerLayer, k => Assert.InRange(k, 1, 24 + 8));
    }
}
