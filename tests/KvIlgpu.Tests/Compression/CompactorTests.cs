using KvIlgpu.Cache;
using KvIlgpu.Compression;
using KvIlgpu.Compute;
using KvIlgpu.Kernels;
using KvIlgpu.Tests.Support;

namespace KvIlgpu.Tests.Compression;

[Collection("backends")]
public class CompactorTests
{
    /// <summary>After a plan is applied: each head holds exactly its kept set (packed K and V, q8 scales, position and
    /// metric travelling together), attention over the cache equals dense attention over the kept KVs, every freed block
    /// is back in the pool, and the protected window is still there; in every storage type, for heads narrower than
    /// head_dim, and for heads of different widths in one cache (widths per (layer, KV head), layer-major: each head then
    /// holds its own number of tokens per block, and a chunk of each frees one block).</summary>
    [Theory]
    [InlineData("cpu", KvStorageType.F32, "8", "8")]
    [InlineData("ilgpu-cpu", KvStorageType.F32, "8", "8")]
    [InlineData("cpu", KvStorageType.Q8, "5", "3")]
    [InlineData("ilgpu-cpu", KvStorageType.Q8, "6", "8")]
    [InlineData("cpu", KvStorageType.F16, "3", "7")]
    [InlineData("ilgpu-cpu", KvStorageType.BF16, "8", "4")]
    [InlineData("cpu", KvStorageType.F32, "8,2,4,6", "1,8,4,3")]
    [InlineData("ilgpu-cpu", KvStorageType.F32, "8,2,4,6", "1,8,4,3")]
    [InlineData("cpu", KvStorageType.Q8, "2,8,5,1", "8,3,1,6")]
    [InlineData("ilgpu-cpu", KvStorageType.F16, "4,8,1,3", "2,5,8,8")]
    [InlineData("cpu", KvStorageType.BF16, "8,8,2,2", "8,1,8,1")]
    public void Compaction_keeps_exactly_the_survivors_and_attention_matches_dense_over_them(string backendName, KvStorageType type,
        string keyWidthList, string valueWidthList)
    {
        var b = Backends.Get(backendName);
        var rng = new Random(5);
        int heads = 4, kvHeads = 2, d = 8, blockSize = 4, layers = 2, seqLen = 37;
        var config = TestModels.Config(dim: heads * d, heads: heads, kvHeads: kvHeads, layers: layers, seq: 64);
        int[] Widths(string list) => list.Contains(',') ? [.. list.Split(',').Select(int.Parse)]
            : [.. Enumerable.Repeat(int.Parse(list), layers * kvHeads)];
        int[] keyWidths = Widths(keyWidthList), valueWidths = Widths(valueWidthList);
        lock (Backends.Lock)
        {
            using var cache = new PagedKvCache(b, config, new PagedCacheOptions(MemoryBytes: 200_000, BlockSize: blockSize,
                MaxSequences: 2, Storage: type, KeyWidths: keyWidths, ValueWidths: valueWidths));
            var layout = cache.Layout;
            int st = (int)type;
            // A row as the cache holds it: packed words, its scale, and the features they widen to.
            (int[] Words, float Scale, float[] Features) Packed(float[] row, int width)
            {
                var words = new int[KvCodec.Words(st, width)];
                float scale = KvCodec.StoreRow(row.AsSpan(0, width), words, st);
                var features = new float[width];
                KvCodec.LoadRow(words, scale, features, st);
                return (words, scale, features);
            }
            int seq = cache.TryAddSequence()!.Value;
            Assert.True(cache.TryReserve(seq, seqLen));
            cache.Append(seq, seqLen);
            // Fill every slot: K/V rows derived from (layer, head, position) so they can be checked after moving.
            float[] K(int l, int h, int p) => Enumerable.Range(0, d).Select(i => MathF.Sin(l * 7 + h * 13 + p * 0.37f + i)).ToArray();
            float[] V(int l, int h, int p) => Enumerable.Range(0, d).Select(i => MathF.Cos(l * 5 + h * 11 + p * 0.29f + i * 2)).ToArray();
            int slots = cache.Pool.Total * layout.SlotsPerBlock;
            var pool = new int[cache.Pool.Total * layout.BlockWords]; var pos = new int[slots];
            var metric = new float[slots]; var scales = new float[2 * slots];
            for (int l = 0; l < layers; l++)
                for (int h = 0; h < kvHeads; h++)
                    for (int t = 0; t < seqLen; t++)
                    {
                        int s = cache.PhysicalSlot(seq, l, h, t);
                        var shape = cache.Shape(l, h);
                        var (kw, ks, _) = Packed(K(l, h, t), shape.KeyWidth);
                        var (vw, vs, _) = Packed(V(l, h, t), shape.ValueWidth);
                        kw.CopyTo(pool, layout.KeyOffset(s, shape)); vw.CopyTo(pool, layout.ValueOffset(s, shape));
                        (scales[2 * s], scales[2 * s + 1]) = (ks, vs);
                        pos[s] = t; metric[s] = (float)rng.NextDouble();
                    }
            b.WriteInts(cache.Buffers.Blocks, pool); b.WriteInts(cache.Buffers.Positions, pos); b.Write(cache.Buffers.Metric, metric);
            if (layout.HasScales) b.Write(cache.Buffers.Scales, scales);

            var before = cache.ReadHeads(seq);
            var budget = new EvictionBudget(MaxCacheTokens: 15, ProtectedWindow: 6, Sinks: 1);
            var plan = CrossHeadChunkSelection.Plan(before, seqLen, budget);
            Assert.True(plan.TotalEvicted > 0);
            int usedBefore = cache.Pool.Used;
            Compactor.Apply(cache, seq, before, plan);
            cache.CheckInvariants();
            var after = cache.ReadHeads(seq);

            int blocksAfter = 0;
            var poolAfter = new int[pool.Length]; var scalesAfter = new float[scales.Length];
            b.ReadInts(cache.Buffers.Blocks, poolAfter);
            if (layout.HasScales) b.Read(cache.Buffers.Scales, scalesAfter);
            for (int i = 0; i < before.Count; i++)
            {
                var gone = plan.Evicted[i].Select(t => before[i].Positions[t]).ToHashSet();
                var keptPositions = before[i].Positions.Where(p => !gone.Contains(p)).OrderBy(p => p).ToArray();
                Assert.Equal(keptPositions, after[i].Positions.OrderBy(p => p).ToArray());
                for (int p = seqLen - budget.ProtectedWindow; p < seqLen; p++) Assert.Contains(p, after[i].Positions);
                Assert.Contains(0, after[i].Positions); // the sink
                var shape = cache.Shape(after[i].Layer, after[i].KvHead);
                for (int t = 0; t < after[i].Length; t++)
                {
                    int p = after[i].Positions[t], s = cache.PhysicalSlot(seq, after[i].Layer, after[i].KvHead, t);
                    var (kw, ks, _) = Packed(K(after[i].Layer, after[i].KvHead, p), shape.KeyWidth);
                    var (vw, vs, _) = Packed(V(after[i].Layer, after[i].KvHead, p), shape.ValueWidth);
                    Assert.Equal(kw, poolAfter.AsSpan((int)layout.KeyOffset(s, shape), shape.KeyWords).ToArray());
                    Assert.Equal(vw, poolAfter.AsSpan((int)layout.ValueOffset(s, shape), shape.ValueWords).ToArray());
                    if (layout.HasScales) Assert.Equal((ks, vs), (scalesAfter[2 * s], scalesAfter[2 * s + 1]));
                    int ot = Array.IndexOf(before[i].Positions, p);
                    Assert.Equal(before[i].Metric[ot], after[i].Metric[t]); // the metric travelled with its KV
                }
                blocksAfter += (after[i].Length + shape.TokensPerBlock - 1) / shape.TokensPerBlock;
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
                    int keyWidth = keyWidths[l * kvHeads + kvh], valueWidth = valueWidths[l * kvHeads + kvh];
                    var sc = kept.Select(p => Packed(K(l, kvh, p), keyWidth).Features.Select((kv, i) => (double)kv * q[h * d + i]).Sum()
                        / Math.Sqrt(d)).ToArray();
                    double mx = sc.Max(), sum = sc.Sum(x => Math.Exp(x - mx));
                    var expected = new float[d];
                    for (int j = 0; j < kept.Length; j++)
                    {
                        var v = Packed(V(l, kvh, kept[j]), valueWidth).Features;
                        for (int i = 0; i < valueWidth; i++) expected[i] += (float)(Math.Exp(sc[j] - mx) / sum) * v[i];
                    }
                    Compare.Close(got.AsSpan(h * d, d), expected, 1e-5, $"layer {l} head {h}");
                }
            }
        }
    }
}
