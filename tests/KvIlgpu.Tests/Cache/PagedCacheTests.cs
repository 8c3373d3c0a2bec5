using KvIlgpu.Cache;
using KvIlgpu.Compute;
using KvIlgpu.Tests.Support;

namespace KvIlgpu.Tests.Cache;

[Collection("backends")]
public class PagedCacheTests
{
    public static TheoryData<string, int, int> KernelCases() => new()
    {
        { "ilgpu-cpu", 4, 4 }, { "ilgpu-cpu", 6, 2 }, { "ilgpu-cpu-wide", 6, 2 }, { "cpu", 4, 4 }, { "cpu", 6, 2 },
    };

    /// <summary>Per-head block tables with different lengths (0, 1, non-multiples of the block size), blocks scattered
    /// through the pool: paged attention equals dense attention over each head's own keys, and the emitted per-key
    /// probabilities equal the dense softmax.</summary>
    [Theory]
    [MemberData(nameof(KernelCases))]
    public void Paged_decode_attention_matches_dense_attention_per_head(string backendName, int heads, int kvHeads)
    {
        var b = Backends.Get(backendName);
        var rng = new Random(heads * 10 + kvHeads);
        int d = 8, blockSize = 4, layers = 2, sequences = 3;
        var config = TestModels.Config(dim: heads * d, heads: heads, kvHeads: kvHeads, layers: layers, seq: 40);
        lock (Backends.Lock)
        {
            using var cache = new PagedKvCache(b, config, new PagedCacheOptions(MemoryBytes: 400_000, BlockSize: blockSize,
                MaxSequences: sequences));
            // Scatter: a shuffled list of free blocks, dealt out to heads.
            var free = Enumerable.Range(0, cache.Pool.Total).OrderBy(_ => rng.Next()).ToList();
            int layer = 1;
            var keys = new Dictionary<(int, int), float[][]>();
            var values = new Dictionary<(int, int), float[][]>();
            int[][] lengths = [new[] { 0, 1, 5, 13, 16, 7 }[..kvHeads], new[] { 9, 4, 1, 2, 3, 11 }[..kvHeads], new[] { 33, 2, 17, 8, 4,
                1 }[..kvHeads]];
            // Each block: blockSize keys of d floats, then blockSize values.
            var pool = new float[cache.Pool.Total * 2 * blockSize * d];
            for (int s = 0; s < sequences; s++)
                for (int h = 0; h < kvHeads; h++)
                {
                    int len = lengths[s][h], nBlocks = (len + blockSize - 1) / blockSize;
                    var blocks = free.Take(nBlocks).ToArray();
                    free.RemoveRange(0, nBlocks);
                    cache.SetHead(s, layer, h, blocks, len);
                    keys[(s, h)] = new float[len][]; values[(s, h)] = new float[len][];
                    for (int t = 0; t < len; t++)
                    {
                        keys[(s, h)][t] = Enumerable.Range(0, d).Select(_ => (float)rng.NextDouble() * 2 - 1).ToArray();
                        values[(s, h)][t] = Enumerable.Range(0, d).Select(_ => (float)rng.NextDouble() * 2 - 1).ToArray();
                        int block = blocks[t / blockSize] * 2 * blockSize * d, row = t % blockSize * d;
                        keys[(s, h)][t].CopyTo(pool, block + row);
                        values[(s, h)][t].CopyTo(pool, block + blockSize * d + row);
                    }
                }
            b.WriteFloatBits(cache.Buffers.Blocks, pool);
            cache.CheckInvariants();

            // One decode row per sequence whose heads are all non-empty: count 1, offset 0 -> each head attends to its whole length.
            var rows = Enumerable.Range(0, sequences).Where(s => lengths[s].All(l => l > 0)).ToArray();
            var q = Enumerable.Range(0, rows.Length * heads * d).Select(_ => (float)rng.NextDouble() * 2 - 1).ToArray();
            var info = rows.SelectMany(s => new[] { s, 1, 0, 0 }).ToArray();
            int stride = 40;
            using var dq = b.Upload(q);
            using var dinfo = b.AllocateInts(info.Length);
            b.WriteInts(dinfo, info);
            using var outp = b.Allocate(rows.Length * heads * d);
            using var probs = b.Allocate(rows.Length * heads * stride);
            b.PagedAttention(dq, cache.Buffers, dinfo, rows.Length, layer, outp, probs, stride, emitProbabilities: true);
            var output = b.ToArray(outp);
            var p = b.ToArray(probs);
            for (int r = 0; r < rows.Length; r++)
                for (int h = 0; h < heads; h++)
                {
                    int kvh = h / (heads / kvHeads), s = rows[r], len = lengths[s][kvh];
                    var scores = new double[len];
                    for (int t = 0; t < len; t++)
                        scores[t] = Enumerable.Range(0, d).Sum(i => (double)q[(r * heads + h) * d + i] * keys[(s,
                            kvh)][t][i]) / Math.Sqrt(d);
                    double max = scores.Max(), sum = scores.Sum(x => Math.Exp(x - max));
                    var expected = new float[d];
                    var expectedP = scores.Select(x => (float)(Math.Exp(x - max) / sum)).ToArray();
                    for (int t = 0; t < len; t++)
                        for (int i = 0; i < d; i++) expected[i] += expectedP[t] * values[(s, kvh)][t][i];
                    Compare.Close(output.AsSpan((r * heads + h) * d, d), expected, 1e-5, $"row {r} head {h}");
                    Compare.Close(p.AsSpan((r * heads + h) * stride, len), expectedP, 1e-5, $"probabilities row {r} head {h}");
                }
        }
    }

    /// <summary>Long random sequences of allocate / append / free / preempt, with the pool's invariants checked after
    /// every step: no block owned twice, used + free = total, every table entry owned by its head; for full-width f32
    /// heads, for narrower packed ones, and for heads of different widths (each with its own tokens per block), with
    /// heads shortened as eviction leaves them.</summary>
    [Theory]
    [InlineData(1, KvStorageType.F32, "0", "0")]
    [InlineData(2, KvStorageType.Q8, "3", "5")]
    [InlineData(3, KvStorageType.F16, "12", "2")]
    [InlineData(4, KvStorageType.F32, "12,2,9,1", "4,12,1,12")]
    [InlineData(5, KvStorageType.Q8, "1,12,5,8", "12,2,3,12")]
    public void Random_allocate_append_free_sequences_keep_the_pool_consistent(int seed, KvStorageType type, string keyWidths,
        string valueWidths)
    {
        var rng = new Random(seed);
        var config = TestModels.Config(layers: 2, heads: 4, kvHeads: 2, seq: 64);
        int[] Widths(string list) => list.Contains(',') ? [.. list.Split(',').Select(int.Parse)]
            : [.. Enumerable.Repeat(int.Parse(list), 4)];
        using var cache = new PagedKvCache(Backends.Get("cpu"), config, new PagedCacheOptions(MemoryBytes: 60_000, BlockSize: 4,
            MaxSequences: 6, Storage: type, KeyWidths: Widths(keyWidths), ValueWidths: Widths(valueWidths)));
        var live = new List<int>();
        for (int step = 0; step < 2000; step++)
        {
            int op = rng.Next(5);
            if (op == 0)
            {
                if (cache.TryAddSequence() is int s)
                {
                    int prompt = rng.Next(0, 20);
                    if (cache.TryReserve(s, prompt)) { cache.Append(s, prompt); live.Add(s); }
                    else cache.RemoveSequence(s); // could not fit: gives its slot back
                }
            }
            else if (op == 1 && live.Count > 0)
            {
                int s = live[rng.Next(live.Count)];
                int n = rng.Next(1, 6);
                if (cache.Length(s, 0, 0) + n <= config.MaxSeqLen && cache.TryReserve(s, n)) cache.Append(s, n);
            }
            else if (op == 4 && live.Count > 0)
            {
                // Eviction's end: one head of a sequence shortened, its trailing blocks back in the pool.
                int s = live[rng.Next(live.Count)], l = rng.Next(config.Layers), h = rng.Next(config.KvHeads);
                cache.Truncate(s, l, h, rng.Next(0, cache.Length(s, l, h) + 1));
            }
            else if (op >= 2 && live.Count > 0)
            {
                // Finish or preempt: both free every block of the sequence.
                int s = live[rng.Next(live.Count)];
                cache.RemoveSequence(s);
                live.Remove(s);
            }
            cache.CheckInvariants();
            foreach (var s in live) // every head holds at least the blocks its length needs at its own tokens per block
                Assert.True(cache.BlocksHeld(s) >= Enumerable.Range(0, config.Layers).Sum(l => Enumerable.Range(0, config.KvHeads)
                    .Sum(h => (cache.Length(s, l, h) + cache.Shape(l, h).TokensPerBlock - 1) / cache.Shape(l, h).TokensPerBlock)));
        }
        foreach (var s in live.ToList()) cache.RemoveSequence(s);
        cache.CheckInvariants();
        Assert.Equal(cache.Pool.Total, cache.Pool.Free);
    }

    [Fact]
    public void A_budget_too_small_for_one_token_is_refused_with_the_numbers()
    {
        var e = Assert.Throws<InvalidOptionException>(() =>
            new PagedKvCache(Backends.Get("cpu"), TestModels.Config(), new PagedCacheOptions(MemoryBytes: 1000)));
        Assert.Contains("KvMemoryBytes", e.Message);
    }

    /// <summary>The same comparison with the ILGPU kernels on a CUDA GPU.</summary>
    [CudaTheory]
    [InlineData(4, 4)]
    [InlineData(6, 2)]
    public void Paged_decode_attention_matches_dense_attention_per_head_on_cuda(int heads, int kvHeads) =>
        Paged_decode_attention_matches_dense_attention_per_head("cuda", heads, kvHeads);
}
