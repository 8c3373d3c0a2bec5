using KvIlgpu.Cache;
using KvIlgpu.Compute;
using KvIlgpu.Tests.Support;

namespace KvIlgpu.Tests.Compute;

/// <summary>The managed backend's fused group attention (<see cref="GroupedPagedAttention"/>) against its block-widening
/// path, which the paged attention tests hold to dense attention in double: bitwise the same scores, probabilities and
/// outputs for every storage type, group sizes that take every pass shape (one, two, three, four and eight query heads
/// per KV head), widths that take its 16- and 32-feature value passes and its 8-feature last passes, heads of lengths
/// that end mid-block and mid-pass, f16 rows holding an infinity or a NaN (which it hands to the exact path), and queries
/// too large to carry its f16 rescale. In the vector-width collection: it switches the path for the whole process.</summary>
[Collection("vector-width")]
public class GroupedPagedAttentionTests
{
    public static TheoryData<KvStorageType, int, int, int, int, int> Cases()
    {
        var cases = new TheoryData<KvStorageType, int, int, int, int, int>();
        foreach (var type in new[] { KvStorageType.F32, KvStorageType.F16, KvStorageType.BF16, KvStorageType.Q8 })
        {
            cases.Add(type, 8, 2, 64, 64, 64);  // four heads a pass
            cases.Add(type, 4, 2, 64, 48, 32);  // two heads a pass; a 16-feature value tail
            cases.Add(type, 6, 2, 64, 64, 48);  // two, then one
            cases.Add(type, 2, 2, 32, 32, 16);  // one head a pass, eight rows
            cases.Add(type, 16, 2, 16, 16, 16); // two passes of four heads
            cases.Add(type, 8, 2, 64, 24, 40);  // a last pass of 8 features, four heads a pass
            cases.Add(type, 4, 2, 64, 56, 8);   // two heads a pass; a value width of 8 alone
            cases.Add(type, 6, 2, 64, 40, 56);  // two, then one; 32, 16 and 8 features of values
        }
        return cases;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Fused_group_attention_is_bitwise_the_block_widening_path(KvStorageType type, int heads, int kvHeads, int d,
        int keyWidth, int valueWidth)
    {
        Assert.True(GroupedPagedAttention.Serves(keyWidth, valueWidth) || !System.Runtime.Intrinsics.X86.Avx2.IsSupported);
        var (fused, fusedProbs) = Attention(type, heads, kvHeads, d, keyWidth, valueWidth, fusedPath: true, special: null);
        var (rows, rowsProbs) = Attention(type, heads, kvHeads, d, keyWidth, valueWidth, fusedPath: false, special: null);
        AssertBitwise(rows, fused, "output");
        AssertBitwise(rowsProbs, fusedProbs, "probabilities");
    }

    [Theory]
    [InlineData("key infinity")]
    [InlineData("value NaN")]
    [InlineData("large query")]
    public void F16_rows_it_cannot_widen_in_place_take_the_exact_path(string special)
    {
        var (fused, fusedProbs) = Attention(KvStorageType.F16, 8, 2, 64, 64, 64, fusedPath: true, special);
        var (rows, rowsProbs) = Attention(KvStorageType.F16, 8, 2, 64, 64, 64, fusedPath: false, special);
        AssertBitwise(rows, fused, "output");
        AssertBitwise(rowsProbs, fusedProbs, "probabilities");
        if (special == "value NaN") Assert.Contains(fused, float.IsNaN);
    }

    private static void AssertBitwise(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i])
                && !(float.IsNaN(expected[i]) && float.IsNaN(actual[i])))
                Assert.Fail($"{what}[{i}]: {actual[i]:R}, the block-widening path {expected[i]:R}");
    }

    /// <summary>Two sequences' caches filled through the cache-write kernel (scattered blocks of 16, heads cut to lengths
    /// that end mid-block), then one decode row each through the paged attention on the chosen path.</summary>
    private static (float[] Output, float[] Probabilities) Attention(KvStorageType type, int heads, int kvHeads, int d, int keyWidth,
        int valueWidth, bool fusedPath, string? special)
    {
        var b = new ManagedSimdBackend();
        var rng = new Random(heads * 131 + keyWidth * 7 + valueWidth + (int)type);
        int blockSize = 16, layers = 2, layer = 1, stride = 80;
        var config = TestModels.Config(dim: heads * d, heads: heads, kvHeads: kvHeads, layers: layers, seq: 80);
        int[] lengths = [75, 37];
        using var cache = new PagedKvCache(b, config, new PagedCacheOptions(MemoryBytes: 4_000_000, BlockSize: blockSize,
            MaxSequences: lengths.Length, Storage: type, KeyWidth: keyWidth, ValueWidth: valueWidth));
        var free = Enumerable.Range(0, cache.Pool.Total).OrderBy(_ => rng.Next()).ToList();
        for (int s = 0; s < lengths.Length; s++)
        {
            Assert.Equal(s, cache.TryAddSequence());
            int rows = lengths[s], blocks = (rows + blockSize - 1) / blockSize;
            for (int h = 0; h < kvHeads; h++)
            {
                cache.SetHead(s, layer, h, free.Take(blocks).ToArray(), rows);
                free.RemoveRange(0, blocks);
            }
            var k = Enumerable.Range(0, rows * kvHeads * d).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray();
            var v = Enumerable.Range(0, rows * kvHeads * d).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray();
            if (special == "key infinity" && s == 0) k[(29 * kvHeads + 1) * d + 5] = float.PositiveInfinity;
            if (special == "value NaN" && s == 1) v[(3 * kvHeads) * d + 17] = float.NaN;
            using var dk = b.Upload(k);
            using var dv = b.Upload(v);
            using var info = b.AllocateInts(4 * rows);
            b.WriteInts(info, Enumerable.Range(0, rows).SelectMany(t => new[] { s, rows, t, t }).ToArray());
            b.PagedWrite(dk, dv, cache.Buffers, info, rows, layer);
        }
        var q = Enumerable.Range(0, lengths.Length * heads * d).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        if (special == "large query") q[3] = 40_000f;
        using var dq = b.Upload(q);
        using var decode = b.AllocateInts(4 * lengths.Length);
        b.WriteInts(decode, Enumerable.Range(0, lengths.Length).SelectMany(s => new[] { s, 1, 0, lengths[s] - 1 }).ToArray());
        using var output = b.Allocate(lengths.Length * heads * d);
        using var probs = b.Allocate(lengths.Length * heads * stride);
        bool before = ManagedSimdBackend.FusedGroupAttention;
        ManagedSimdBackend.FusedGroupAttention = fusedPath;
        try
        {
            b.PagedAttention(dq, cache.Buffers, decode, lengths.Length, layer, output, probs, stride, emitProbabilities: true);
        }
        finally
        {
            ManagedSimdBackend.FusedGroupAttention = before;
        }
        var o = b.ToArray(output);
        var p = b.ToArray(probs);
        // Only the visible scores are written: compare those.
        var visible = new List<float>();
        for (int s = 0; s < lengths.Length; s++)
            for (int h = 0; h < heads; h++) visible.AddRange(p.AsSpan((s * heads + h) * stride, lengths[s]).ToArray());
        return (o, visible.ToArray());
    }
}
