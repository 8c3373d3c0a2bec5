using KvIlgpu.Cache;
using KvIlgpu.Compute;
using KvIlgpu.Tests.Support;

namespace KvIlgpu.Tests.Compression;

[Collection("backends")]
public class MetricTests
{
    /// <summary>SPEC 2 decode accumulation: each slot's metric grows by the squared (or plain) softmax probability that
    /// each decode query gave it, summed over the query heads of its GQA group; rows of one call carry their own modes
    /// (the first row squared or plain, the last the other one), and a row whose mode is None adds nothing.</summary>
    [Theory]
    [InlineData("cpu", true)]
    [InlineData("cpu", false)]
    [InlineData("ilgpu-cpu", true)]
    [InlineData("ilgpu-cpu-wide", false)]
    public void Decode_accumulation_adds_group_summed_probabilities(string backendName, bool squared)
    {
        var b = Backends.Get(backendName);
        var rng = new Random(squared ? 1 : 2);
        int heads = 6, kvHeads = 2, d = 8, blockSize = 4, layer = 0, stride = 32;
        var config = TestModels.Config(dim: heads * d, heads: heads, kvHeads: kvHeads, layers: 1, seq: 32);
        lock (Backends.Lock)
        {
            using var cache = new PagedKvCache(b, config, new PagedCacheOptions(MemoryBytes: 200_000, BlockSize: blockSize,
                MaxSequences: 3));
            var free = Enumerable.Range(0, cache.Pool.Total).OrderBy(_ => rng.Next()).ToList();
            int[][] lengths = [[7, 13], [1, 16], [30, 5]];
            for (int s = 0; s < 3; s++)
                for (int h = 0; h < kvHeads; h++)
                {
                    int n = (lengths[s][h] + blockSize - 1) / blockSize;
                    cache.SetHead(s, layer, h, free.Take(n).ToArray(), lengths[s][h]);
                    free.RemoveRange(0, n);
                }
            int slots = cache.Pool.Total * blockSize;
            // Every block: blockSize keys of d floats, then as many values (random too).
            var keys = Enumerable.Range(0, cache.Pool.Total * 2 * blockSize * d).Select(_ => (float)rng.NextDouble() * 2 - 1).ToArray();
            var metric0 = Enumerable.Range(0, slots).Select(_ => (float)rng.NextDouble()).ToArray();
            b.WriteFloatBits(cache.Buffers.Blocks, keys);
            b.Write(cache.Buffers.Metric, metric0);
            var q = Enumerable.Range(0, 3 * heads * d).Select(_ => (float)rng.NextDouble() * 2 - 1).ToArray();
            using var dq = b.Upload(q);
            using var info = b.AllocateInts(12);
            b.WriteInts(info, [0, 1, 0, 0, 1, 1, 0, 0, 2, 1, 0, 0]);
            using var mask = b.AllocateInts(3);
            var first = squared ? MetricAccumulation.Squared : MetricAccumulation.Plain;
            var last = squared ? MetricAccumulation.Plain : MetricAccumulation.Squared;
            b.WriteInts(mask, [(int)first, (int)MetricAccumulation.None, (int)last]); // the middle row does not accumulate
            using var outp = b.Allocate(3 * heads * d);
            using var probs = b.Allocate(3 * heads * stride);
            b.PagedAttention(dq, cache.Buffers, info, 3, layer, outp, probs, stride, emitProbabilities: true);
            b.AccumulateMetric(probs, stride, cache.Buffers, info, mask, 3, layer);
            var metric = b.ToArray(cache.Buffers.Metric);

            var expected = (float[])metric0.Clone();
            foreach (int r in new[] { 0, 2 })
                for (int g = 0; g < kvHeads; g++)
                {
                    int len = lengths[r][g];
                    for (int qh = g * 3; qh < g * 3 + 3; qh++)
                    {
                        var sc = Enumerable.Range(0, len).Select(t =>
                        {
                            int slot = cache.PhysicalSlot(r, layer, g, t), key = (slot / blockSize * 2 * blockSize + slot % blockSize) * d;
                            return Enumerable.Range(0, d).Sum(i => (double)q[(r * heads + qh) * d + i] * keys[key + i]) / Math.Sqrt(d);
                        }).ToArray();
                        double mx = sc.Max(), sum = sc.Sum(x => Math.Exp(x - mx));
                        for (int t = 0; t < len; t++)
                        {
                            double pr = Math.Exp(sc[t] - mx) / sum;
                            bool rowSquared = (r == 0 ? first : last) == MetricAccumulation.Squared;
                            expected[cache.PhysicalSlot(r, layer, g, t)] += (float)(rowSquared ? pr * pr : pr);
                        }
                    }
                }
            Compare.Close(metric, expected, 1e-5, "metric");
        }
    }
}
