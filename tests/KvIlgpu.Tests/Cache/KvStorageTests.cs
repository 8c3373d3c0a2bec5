using KvIlgpu.Cache;
using KvIlgpu.Compression;
using KvIlgpu.Compute;
using KvIlgpu.Engine;
using KvIlgpu.Kernels;
using KvIlgpu.Models;
using KvIlgpu.Tests.Support;

namespace KvIlgpu.Tests.Cache;

/// <summary>Compact KV storage: the packing of f16, bf16 and q8 against independent references (System.Half, exact
/// rounding in double, a reference quantiser), and paged attention over caches narrower than head_dim in every storage
/// type against dense attention over the reference-rounded keys and values.</summary>
[Collection("backends")]
public class KvStorageTests
{
    /// <summary>Every 16-bit pattern widens as System.Half widens it (NaN to a NaN).</summary>
    [Fact]
    public void Every_half_widens_as_System_Half_does()
    {
        for (int bits = 0; bits < 65536; bits++)
        {
            float expected = (float)BitConverter.UInt16BitsToHalf((ushort)bits), got = KvCodec.HalfToFloat(bits);
            if (float.IsNaN(expected)) Assert.True(float.IsNaN(got), $"0x{bits:X4}");
            else Assert.Equal(BitConverter.SingleToInt32Bits(expected), BitConverter.SingleToInt32Bits(got));
        }
    }

    /// <summary>f32 to half rounds as System.Half's conversion does (to nearest even, overflow to infinity, subnormals),
    /// over random bit patterns and the edges of the half range.</summary>
    [Fact]
    public void Floats_round_to_half_as_System_Half_does()
    {
        var rng = new Random(1);
        var values = Enumerable.Range(0, 200_000).Select(_ => BitConverter.Int32BitsToSingle(rng.Next() * (rng.Next(2) == 0 ? 1 : -1)))
            .Concat(Enumerable.Range(0, 100_000).Select(_ => (float)((rng.NextDouble() * 2 - 1) * Math.Pow(2, rng.Next(-30, 18)))))
            .Concat([0f, -0f, 65504f, 65519.99f, 65520f, -65520f, 6.1035156e-5f, 5.9604645e-8f, 2.9802322e-8f, 2.9802326e-8f,
                float.PositiveInfinity, float.NegativeInfinity, float.Epsilon]);
        foreach (var x in values)
        {
            ushort expected = BitConverter.HalfToUInt16Bits((Half)x);
            int got = KvCodec.FloatToHalf(x);
            if (float.IsNaN(x)) Assert.True(Half.IsNaN(BitConverter.UInt16BitsToHalf((ushort)got)));
            else Assert.True(expected == got, $"{x:R}: expected 0x{expected:X4}, got 0x{got:X4}");
        }
    }

    /// <summary>bf16 rounding is the nearest bf16 in exact arithmetic, ties to the even pattern.</summary>
    [Fact]
    public void Floats_round_to_the_nearest_bfloat16()
    {
        var rng = new Random(2);
        for (int n = 0; n < 200_000; n++)
        {
            float x = (float)((rng.NextDouble() * 2 - 1) * Math.Pow(2, rng.Next(-60, 60)));
            Assert.Equal(ReferenceBFloat16(x), BitConverter.Int32BitsToSingle(KvCodec.FloatToBFloat16(x) << 16));
        }
    }

    /// <summary>The two bf16 values around x (its truncation and the next pattern up in magnitude), the nearer one, ties
    /// to an even mantissa.</summary>
    private static float ReferenceBFloat16(float x)
    {
        int bits = BitConverter.SingleToInt32Bits(x);
        int low = bits & unchecked((int)0xFFFF0000), high = low + 0x10000;
        double a = BitConverter.Int32BitsToSingle(low), b = BitConverter.Int32BitsToSingle(high);
        double da = Math.Abs(x - a), db = Math.Abs(x - b);
        int chosen = da < db ? low : db < da ? high : ((low >> 16) & 1) == 0 ? low : high;
        return BitConverter.Int32BitsToSingle(chosen);
    }

    /// <summary>A reference quantiser written from the definition: per row, scale = max |x| / 127 and code = x / scale
    /// rounded to nearest (halves away from zero), in double.</summary>
    private static float[] ReferenceQ8(float[] row)
    {
        double scale = row.Max(v => Math.Abs((double)v)) / 127;
        return scale == 0 ? new float[row.Length]
            : row.Select(v => (float)(Math.Clamp(Math.Round(v / scale, MidpointRounding.AwayFromZero), -127, 127) * (float)scale))
                .ToArray();
    }

    private static float[] Rounded(float[] row, KvStorageType type) => type switch
    {
        KvStorageType.F16 => row.Select(v => (float)(Half)v).ToArray(),
        KvStorageType.BF16 => row.Select(ReferenceBFloat16).ToArray(),
        KvStorageType.Q8 => ReferenceQ8(row),
        _ => row,
    };

    /// <summary>The managed attention's in-place widening of 16-bit rows (pair order: per 16 features the even ones, then
    /// the odd ones; a last 8 as 4 and 4) gives System.Half's and the bf16 definition's values, rows at a stride wider than
    /// their width; and a block holding an f16 infinity or NaN, which the in-place widening would turn finite, comes out
    /// exact.</summary>
    [Theory]
    [InlineData(KvStorageType.F16, false)]
    [InlineData(KvStorageType.F16, true)]
    [InlineData(KvStorageType.BF16, false)]
    public void Rows_widen_in_pair_order_to_the_formats_values(KvStorageType type, bool nonFinite)
    {
        var rng = new Random((int)type * 2 + (nonFinite ? 1 : 0));
        foreach (int width in new[] { 8, 24, 40, 64 })
        {
            const int Count = 5;
            int rowWords = KvCodec.Words((int)type, width) + 4, stride = rowWords * 2;
            var pool = new int[Count * rowWords];
            var rows = new float[Count][];
            for (int i = 0; i < Count; i++)
            {
                // Normal values of every size, subnormal halves, zeros of both signs.
                rows[i] = Enumerable.Range(0, width).Select(f => f % 7 == 3 ? (float)(rng.NextDouble() * 1e-6)
                    : f % 11 == 5 ? -0f : (float)((rng.NextDouble() * 2 - 1) * Math.Pow(10, rng.Next(-3, 4)))).ToArray();
                if (nonFinite && i == 2) { rows[i][1] = float.PositiveInfinity; rows[i][width - 1] = float.NaN; }
                KvCodec.StoreRow(rows[i], pool.AsSpan(i * rowWords, rowWords), (int)type);
            }
            var paired = new float[Count * stride];
            KvRowDecoder.DecodePaired(pool, rowWords, Count, width, paired, stride, (int)type);
            for (int i = 0; i < Count; i++)
            {
                var natural = new float[width];
                KvRowDecoder.FromPairOrder(paired.AsSpan(i * stride, width), natural);
                var halves = System.Runtime.InteropServices.MemoryMarshal.Cast<int, ushort>(pool.AsSpan(i * rowWords, rowWords));
                for (int f = 0; f < width; f++)
                {
                    float expected = type == KvStorageType.F16 ? (float)BitConverter.UInt16BitsToHalf(halves[f])
                        : BitConverter.Int32BitsToSingle(halves[f] << 16);
                    Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(natural[f])
                        || (float.IsNaN(expected) && float.IsNaN(natural[f])), $"width {width}, row {i}, feature {f}");
                }
            }
        }
    }

    [Theory]
    [InlineData(KvStorageType.F32)]
    [InlineData(KvStorageType.F16)]
    [InlineData(KvStorageType.BF16)]
    [InlineData(KvStorageType.Q8)]
    public void A_row_packs_and_widens_to_its_reference_rounding(KvStorageType type)
    {
        var rng = new Random((int)type);
        foreach (int width in new[] { 1, 3, 5, 8, 13, 64 })
        {
            var row = Enumerable.Range(0, width).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray();
            var packed = new int[KvCodec.Words((int)type, width)];
            float scale = KvCodec.StoreRow(row, packed, (int)type);
            var back = new float[width];
            KvCodec.LoadRow(packed, scale, back, (int)type);
            var expected = Rounded(row, type);
            for (int i = 0; i < width; i++)
                if (type == KvStorageType.Q8)
                {
                    // Within the quantiser's error, and the reference's own code.
                    Assert.True(Math.Abs(back[i] - row[i]) <= scale / 2 * 1.0001, $"width {width} feature {i}");
                    Assert.Equal(expected[i], back[i], 5);
                }
                else Assert.Equal(expected[i], back[i]);
            // The SIMD widening of the managed backend gives the same features (q8: the codes, unscaled).
            var simd = new float[width];
            KvRowDecoder.Decode(packed, simd, (int)type);
            for (int i = 0; i < width; i++) Assert.Equal(back[i], type == KvStorageType.Q8 ? simd[i] * scale : simd[i], 6);
        }
    }

    /// <summary>Heads of 8 (full, and 5/3 of them: the managed backend's per-row fallback) and, on the managed backend,
    /// of 64 (full, and 40/24) and of 32, with 1, 2, 3 and 4 query heads per KV head: every pass shape of its fused group
    /// attention, held here to dense attention in double.</summary>
    public static TheoryData<string, KvStorageType, int, int, int, int, bool> AttentionCases()
    {
        var cases = new TheoryData<string, KvStorageType, int, int, int, int, bool>();
        foreach (var backend in new[] { "cpu", "ilgpu-cpu" })
            foreach (var type in new[] { KvStorageType.F32, KvStorageType.F16, KvStorageType.BF16, KvStorageType.Q8 })
            {
                cases.Add(backend, type, 8, 8, 8, 4, false);
                cases.Add(backend, type, 8, 5, 3, 4, false);
                cases.Add(backend, type, 8, 5, 3, 4, true);
                if (backend == "cpu")
                {
                    cases.Add(backend, type, 64, 64, 64, 4, false);
                    cases.Add(backend, type, 64, 40, 24, 4, false);
                    cases.Add(backend, type, 64, 40, 24, 4, true);
                    // The fused group attention's other pass shapes: four, three (two then one) and one query heads
                    // per KV head.
                    cases.Add(backend, type, 64, 64, 48, 8, false);
                    cases.Add(backend, type, 64, 48, 32, 6, false);
                    cases.Add(backend, type, 32, 32, 16, 2, false);
                    cases.Add(backend, type, 32, 24, 8, 2, true);
                }
            }
        return cases;
    }

    /// <summary>Rows written through the cache-write kernel into scattered blocks, heads then cut to different lengths; a
    /// decode row's attention over each head reads keyWidth key and valueWidth value features (the first ones, widened
    /// from the storage type): it equals dense attention in double over the reference-rounded keys and values, scored at
    /// 1/sqrt(head_dim), with the output's other features zero. Freed blocks go back to the pool. With mixedWidths each
    /// (layer, KV head) stores its own widths (the attended layer's heads keyWidth / valueWidth and half keyWidth / the
    /// full head_dim), so each holds its own number of tokens per block.</summary>
    [Theory]
    [MemberData(nameof(AttentionCases))]
    public void Paged_attention_over_packed_narrow_heads_matches_dense_attention_over_rounded_kvs(string backendName,
        KvStorageType type, int d, int keyWidth, int valueWidth, int heads, bool mixedWidths)
    {
        var b = Backends.Get(backendName);
        var rng = new Random(keyWidth * 31 + (int)type);
        int kvHeads = 2, blockSize = 4, layers = 2, sequences = 2, layer = 1;
        var config = TestModels.Config(dim: heads * d, heads: heads, kvHeads: kvHeads, layers: layers, seq: 40);
        int[] promptLengths = [13, 22];
        int[][] cutTo = [[13, 6], [1, 22]];
        // Widths of the attended layer's KV heads; layer 0 stores head_dim.
        int[] kws = mixedWidths ? [keyWidth, Math.Max(1, keyWidth / 2)] : [keyWidth, keyWidth];
        int[] vws = mixedWidths ? [valueWidth, d] : [valueWidth, valueWidth];
        lock (Backends.Lock)
        {
            using var cache = new PagedKvCache(b, config, new PagedCacheOptions(MemoryBytes: 200_000, BlockSize: blockSize,
                MaxSequences: sequences, Storage: type, KeyWidths: [d, d, .. kws], ValueWidths: [d, d, .. vws]));
            int PerBlock(int l, int h) => cache.Shape(l, h).TokensPerBlock;
            // Scatter the pool: every head takes blocks from a shuffled free list.
            var free = Enumerable.Range(0, cache.Pool.Total).OrderBy(_ => rng.Next()).ToList();
            var keys = new Dictionary<(int, int), float[][]>();
            var values = new Dictionary<(int, int), float[][]>();
            for (int s = 0; s < sequences; s++)
            {
                Assert.Equal(s, cache.TryAddSequence());
                for (int l = 0; l < layers; l++)
                    for (int h = 0; h < kvHeads; h++)
                    {
                        int n = (promptLengths[s] + PerBlock(l, h) - 1) / PerBlock(l, h);
                        cache.SetHead(s, l, h, free.Take(n).ToArray(), promptLengths[s]);
                        free.RemoveRange(0, n);
                    }
                // The prompt's rows through the write kernel: row t of a step of promptLengths[s] rows goes to slot t.
                int rows = promptLengths[s];
                var k = Enumerable.Range(0, rows * kvHeads * d).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
                var v = Enumerable.Range(0, rows * kvHeads * d).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
                using var dk = b.Upload(k);
                using var dv = b.Upload(v);
                using var info = b.AllocateInts(4 * rows);
                b.WriteInts(info, Enumerable.Range(0, rows).SelectMany(t => new[] { s, rows, t, t }).ToArray());
                b.PagedWrite(dk, dv, cache.Buffers, info, rows, layer);
                for (int h = 0; h < kvHeads; h++)
                {
                    keys[(s, h)] = Enumerable.Range(0, rows).Select(t => Rounded(k.AsSpan((t * kvHeads + h) * d, kws[h]).ToArray(), type))
                        .ToArray();
                    values[(s, h)] = Enumerable.Range(0, rows).Select(t => Rounded(v.AsSpan((t * kvHeads + h) * d, vws[h]).ToArray(),
                        type)).ToArray();
                }
            }
            int usedBefore = cache.Pool.Used;
            int freed = 0;
            for (int s = 0; s < sequences; s++)
                for (int h = 0; h < kvHeads; h++)
                {
                    int perBlock = PerBlock(layer, h);
                    freed += (promptLengths[s] + perBlock - 1) / perBlock - (cutTo[s][h] + perBlock - 1) / perBlock;
                    cache.Truncate(s, layer, h, cutTo[s][h]);
                }
            Assert.Equal(usedBefore - freed, cache.Pool.Used);
            cache.CheckInvariants();

            var q = Enumerable.Range(0, sequences * heads * d).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
            int stride = 32;
            using var dq = b.Upload(q);
            using var decode = b.AllocateInts(4 * sequences);
            b.WriteInts(decode, Enumerable.Range(0, sequences).SelectMany(s => new[] { s, 1, 0, 0 }).ToArray());
            using var output = b.Allocate(sequences * heads * d);
            using var probs = b.Allocate(sequences * heads * stride);
            b.PagedAttention(dq, cache.Buffers, decode, sequences, layer, output, probs, stride, emitProbabilities: true);
            var got = b.ToArray(output);
            for (int s = 0; s < sequences; s++)
                for (int h = 0; h < heads; h++)
                {
                    int g = h / (heads / kvHeads), len = cutTo[s][g];
                    var scores = Enumerable.Range(0, len).Select(t => Enumerable.Range(0, kws[g])
                        .Sum(i => (double)q[(s * heads + h) * d + i] * keys[(s, g)][t][i]) / Math.Sqrt(d)).ToArray();
                    double max = scores.Max(), sum = scores.Sum(x => Math.Exp(x - max));
                    var expected = new float[d];
                    for (int t = 0; t < len; t++)
                        for (int i = 0; i < vws[g]; i++) expected[i] += (float)(Math.Exp(scores[t] - max) / sum * values[(s, g)][t][i]);
                    Compare.Close(got.AsSpan((s * heads + h) * d, d), expected, 1e-5, $"{type} sequence {s} head {h}");
                }
        }
    }

    /// <summary>Bytes per slot follow the packing: K and V words plus position, metric and (q8) two scales; a cache of one
    /// budget holds as many more blocks as its slots are smaller.</summary>
    [Theory]
    [InlineData(KvStorageType.F32, 64, 64, (64 + 64) * 4 + 8)]
    [InlineData(KvStorageType.F16, 64, 64, (32 + 32) * 4 + 8)]
    [InlineData(KvStorageType.BF16, 64, 32, (32 + 16) * 4 + 8)]
    [InlineData(KvStorageType.Q8, 64, 64, (16 + 16) * 4 + 16)]
    [InlineData(KvStorageType.F16, 7, 5, (4 + 3) * 4 + 8)]
    public void Bytes_per_slot_are_the_packed_widths_plus_metadata(KvStorageType type, int keyWidth, int valueWidth, int bytes)
    {
        var layout = new PagedLayout(16, 64, 8, 2, 4, 64, type, keyWidth, valueWidth);
        Assert.Equal(bytes, layout.BytesPerSlot);
        Assert.Equal(16L * bytes, layout.BytesPerBlock);
        var config = TestModels.Config(dim: 8 * 64, heads: 8, kvHeads: 2, layers: 4, seq: 1024);
        using var cache = new PagedKvCache(Backends.Get("cpu"), config, new PagedCacheOptions(MemoryBytes: 4_000_000, BlockSize: 16,
            MaxSequences: 2, Storage: type, KeyWidth: keyWidth, ValueWidth: valueWidth));
        Assert.Equal((4_000_000 - cache.MetadataBytes) / (16L * bytes), cache.Pool.Total);
    }

    /// <summary>The public size helper gives what an engine of that storage type reports it holds per token per head.</summary>
    [Theory]
    [InlineData(KvStorageType.F32, 2 * 12 * 4 + 8)]
    [InlineData(KvStorageType.F16, 12 * 4 + 8)]
    [InlineData(KvStorageType.Q8, 6 * 4 + 16)]
    public void Bytes_per_token_of_a_storage_type_are_what_an_engine_holds(KvStorageType type, int bytes)
    {
        Assert.Equal(bytes, KvStorageSizes.BytesPerToken(type, 12, 12));
        using var engine = InferenceEngine.FromWeights(TestModels.Random(TestModels.Config(), seed: 2),
            new EngineOptions(DeviceKind.Cpu, KvStorage: type));
        Assert.Equal(bytes, engine.KvBytesPerToken);
    }

    /// <summary>A bytes budget is as many tokens per head as the bytes hold in the cache's layout.</summary>
    [Fact]
    public void A_bytes_budget_becomes_tokens_per_head_in_the_layout()
    {
        var budget = new EvictionBudget(MaxCacheBytes: 10_000, ProtectedWindow: 4);
        budget.Validate();
        Assert.Equal(10_000 / (8 * 40), budget.InTokens(40, 8).MaxCacheTokens);
        Assert.Null(budget.InTokens(40, 8).MaxCacheBytes);
        Assert.Equal(1, budget.InTokens(100_000, 8).MaxCacheTokens);
        Assert.Throws<InvalidOptionException>(() => new EvictionBudget(MaxCacheTokens: 5, MaxCacheBytes: 100).Validate());
        var e = Assert.Throws<InvalidOptionException>(() => new EvictionBudget(MaxCacheBytes: 0).Validate());
        Assert.Equal("MaxCacheBytes", e.Option);
    }

    /// <summary>Auto is the weights' own type: f32, f16 or bf16 as loaded, and f16 for q8_0 GGUF weights.</summary>
    [Theory]
    [InlineData(WeightType.F32, KvStorageType.F32)]
    [InlineData(WeightType.F16, KvStorageType.F16)]
    [InlineData(WeightType.BF16, KvStorageType.BF16)]
    public void Auto_storage_is_the_weights_type(WeightType weights, KvStorageType expected)
    {
        var c = TestModels.Config();
        using var dir = new TempDir();
        TestModels.WriteHuggingFace(dir.Path, TestModels.Random(c, seed: 1), weights);
        using var engine = InferenceEngine.Load(dir.Path, new EngineOptions(DeviceKind.Cpu));
        Assert.Equal(expected, engine.KvStorage);
        using var forced = InferenceEngine.Load(dir.Path, new EngineOptions(DeviceKind.Cpu, KvStorage: KvStorageType.Q8));
        Assert.Equal(KvStorageType.Q8, forced.KvStorage);
    }

    [Fact]
    public void Auto_storage_of_quantised_gguf_weights_is_f16()
    {
        var c = TestModels.Config(dim: 64, hidden: 96);
        using var dir = new TempDir();
        string path = Path.Combine(dir.Path, "model.gguf");
        TestModels.WriteGguf(path, TestModels.Random(c, seed: 1), GgufType.Q8_0);
        using var engine = InferenceEngine.Load(path, new EngineOptions(DeviceKind.Cpu));
        Assert.Equal(KvStorageType.F16, engine.KvStorage);
    }
}
