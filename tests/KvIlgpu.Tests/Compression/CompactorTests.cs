using KvIlgpu.Cache;
using KvIlgpu.Compression;
using KvIlgpu.Compute;
using KvIlgpu.Tests.Support;

namespace KvIlgpu.Tests.Compression;

[Collection("backends")]
public class CompactorTests
{
    /// <summary>After a plan is applied: each head holds exactly its kept set (K, V, position and metric travelling
    /// together), attention over the cache equals dense attention over the kept KVs, every freed block is back in the
    /// pool, and the protected window is still there.</summary>
    [Theory]
    [InlineData("cpu")]
    [InlineData("ilgpu-cpu")]
    public void Compaction_keeps_exactly_the_survivors_and_attention_matches_dense_over_them(string backendName)
    {
        var b = Backends.Get(backendName);
        var rng = new Random(5);
        int heads = 4, kvHeads = 2, d = 8, blockSize = 4, layers = 2, seqLen = 37;
        var config = TestModels.Config(dim: heads * d, heads: heads, kvHeads: kvHeads, layers: layers, seq: 64);
        lock (Backends.Lock)
        {
            using var cache = new PagedKvCache(b, config, new PagedCacheOptions(MemoryBytes: 200_000, BlockSize: blockSize,
                MaxSequences: 2));
            int seq = cache.TryAddSequence()!.Value;
            Assert.True(cache.TryReserve(seq, seqLen));
            cache.Append(seq, seqLen);
            // Fill every slot: K/V rows derived from (layer, head, position) so they can be checked after moving.
            float[] K(int l, int h, int p) => Enumerable.Range(0, d).Select(i => MathF.Sin(l * 7 + h * 13 + p * 0.37f + i)).ToArray();
            float[] V(int l, int h, int p) => Enumerable.Range(0, d).Select(i => MathF.Cos(l * 5 + h * 11 + p * 0.29f + i * 2)).ToArray();
            int slots = cache.Pool.Total * blockSize;
            var kPool = new float[slots * d]; var vPool = new float[slots * d]; var pos = new int[slots]; var metric = new float[slots];
            for (int l = 0; l < layers; l++)
                for (int h = 0; h < kvHeads; h++)
                    for (int t = 0; t < seqLen; t++)
                    {
                        int s = cache.PhysicalSlot(seq, l, h, t);
                        K(l, h, t).CopyTo(kPool, s * d); V(l, h, t).CopyTo(vPool, s * d);
                        pos[s] = t; metric[s] = (float)rng.NextDouble();
                    }
            b.WriteFloatBits(cache.Buffers.Keys, kPool); b.WriteFloatBits(cache.Buffers.Values, vPool); b.WriteInts(cache.Buffers.Positions,
                pos); b.Write(cache.Buffers.Metric, metric);

            var before = cache.ReadHeads(seq);
            var budget = new EvictionBudget(MaxCacheTokens: 15, ProtectedWindow: 6, Sinks: 1);
            var plan = CrossHeadChunkSelection.Plan(before, blockSize, seqLen, budget);
            Assert.True(plan.TotalEvicted > 0);
            int usedBefore = cache.Pool.Used;
            Compactor.Apply(cache, seq, before, plan);
            cache.CheckInvariants();
            var after = cache.ReadHeads(seq);

            int blocksAfter = 0;
            var kAfter = b.ToFloatBits(cache.Buffers.Keys); var vAfter = b.ToFloatBits(cache.Buffers.Values);
            for (int i = 0; i < before.Count; i++)
            {
                var gone = plan.Evicted[i].Select(t => before[i].Positions[t]).ToHashSet();
                var keptPositions = before[i].Positions.Where(p => !gone.Contains(p)).OrderBy(p => p).ToArray();
                Assert.Equal(keptPositions, after[i].Positions.OrderBy(p => p).ToArray());
                for (int p = seqLen - budget.ProtectedWindow; p < seqLen; p++) Assert.Contains(p, after[i].Positions);
                Assert.Contains(0, after[i].Positions); // the sink
                for (int t = 0; t < after[i].Length; t++)
                {
                    int p = after[i].Positions[t], s = cache.PhysicalSlot(seq, after[i].Layer, after[i].KvHead, t);
                    Assert.Equal(K(after[i].Layer, after[i].KvHead, p), kAfter.AsSpan(s * d, d).ToArray());
                    Assert.Equal(V(after[i].Layer, after[i].KvHead, p), vAfter.AsSpan(s * d, d).ToArray());
                    int ot = Array.IndexOf(before[i].Positions, p);
                    Assert.Equal(before[i].Metric[ot], after[i].Metric[t]); // the metric travelled with its KV
                }
                blocksAfter += (after[i].Length + blockSize - 1) / blockSize;
            }
            Assert.Equal(blocksAfter, cache.Pool.Used);
            Assert.True(cache.Pool.Used < usedBefore);

            // Attention of one decode query per layer over the compacted cache equals dense attention over the kept KVs.
            var q = Enumerable.Range(0, heads * d).Select(_ => (float)rng.NextDouble() * 2 - 1).ToArray();
            using var dq = b.Upload(q);
            using var info = b.AllocateInts(4);
            b.WriteInts(info, [seq, 1, 0, seqLen]); // a row appending 1 token: sees length - 1 + 0 + 1 = every slot
            using var outp = b.Allocate(heads * d);
            using var probs = b.Allocate(heads * 64);
            for (int l = 0; l < layers; l++)
            {
                b.PagedAttention(dq, cache.Buffers, info, 1, l, outp, probs, 64, emitProbabilities: false);
                var got = b.ToArray(outp);
                for (int h = 0; h < heads; h++)
                {
                    int kvh = h / (heads / kvHeads);
                    var kept = after.Single(x => x.Layer == l && x.KvHead == kvh).Positions;
                    var sc = kept.Select(p => K(l, kvh, p).Select((kv, i) => (double)kv * q[h * d + i]).Sum() / Math.Sqrt(d)).ToArray();
                    double mx = sc.Max(), sum = sc.Sum(x => Math.Exp(x - mx));
                    var expected = new float[d];
                    for (int j = 0; j < kept.Length; j++)
                    {
                        var v = V(l, kvh, kept[j]);
                        for (int i = 0; i < d; i++) expected[i] += (float)(Math.Exp(sc[j] - mx) / sum) * v[i];
                    }
                    Compare.Close(got.AsSpan(h * d, d), expected, 1e-5, $"layer {l} head {h}");
                }
            }
        }
    }
}
