using KvIlgpu.Compute;
using KvIlgpu.Engine;
using KvIlgpu.Projection;
using KvIlgpu.Tests.Support;

namespace KvIlgpu.Tests.Projection;

/// <summary>ThinK in the engine against ThinK written out on the plain reference: channel scores from the window
/// queries and the cached keys, the pruned channels zeroed in the cache and in every later key.</summary>
public class ThinKTests
{
    [Theory]
    [InlineData(0.5, 4, 2)]
    [InlineData(0.25, 8, 2)]
    [InlineData(0.75, 4, 4)]
    public async Task Generation_with_thinK_follows_the_reference_that_prunes_the_same_channels(double share, int window, int kvHeads)
    {
        var c = TestModels.Config(dim: 32, hidden: 48, layers: 2, heads: 4, kvHeads: kvHeads, seq: 48);
        var w = TestModels.Random(c, seed: 21);
        var rng = new Random(4);
        var prompt = Enumerable.Range(0, 20).Select(_ => rng.Next(3, c.VocabSize)).ToArray();
        int d = c.HeadDim, group = c.Heads / c.KvHeads, keep = (int)Math.Round(share * d);

        var reference = ReferenceLlama.From(w);
        var queries = Enumerable.Range(0, c.Layers).Select(_ => new List<double[]>()).ToArray();
        double[] logits = [];
        for (int t = 0; t < prompt.Length; t++)
        {
            logits = reference.Step(prompt[t]);
            if (t >= prompt.Length - window) for (int l = 0; l < c.Layers; l++) queries[l].Add(reference.LastQueries[l]);
        }
        // Score of channel ch of KV head h: ||Q_w[:, ch]|| over the group's query heads times ||K[:, ch]|| over the cache.
        var mask = new double[c.Layers][];
        for (int l = 0; l < c.Layers; l++)
        {
            mask[l] = new double[c.KvDim];
            for (int h = 0; h < c.KvHeads; h++)
            {
                var scores = Enumerable.Range(0, d).Select(ch =>
                    Math.Sqrt(queries[l].Sum(q => Enumerable.Range(h * group, group).Sum(g => q[g * d + ch] * q[g * d + ch])))
                    * Math.Sqrt(reference.CachedKeys(l).Sum(k => k[h * d + ch] * k[h * d + ch]))).ToArray();
                foreach (var ch in Enumerable.Range(0, d).OrderByDescending(ch => scores[ch]).Take(keep)) mask[l][h * d + ch] = 1;
            }
        }
        reference.MaskKeys(mask);
        // The prefill's logits are the unpruned ones; everything after reads pruned keys.
        var expected = new List<int>();
        for (int i = 0; i < 10; i++)
        {
            int next = Array.IndexOf(logits, logits.Max());
            expected.Add(next);
            logits = reference.Step(next);
        }
        using var engine = InferenceEngine.FromWeights(w, new EngineOptions(DeviceKind.Cpu));
        var got = new List<int>();
        await foreach (var t in engine.GenerateAsync(prompt, new GenerationOptions(10, StopAtEos: false,
            ThinK: new ThinKOptions(share, window)))) got.Add(t.Id);
        Assert.Equal(expected, got);

        // And the pruning matters here: the pruned reference's logits differ from the unpruned one's on the same tokens.
        var plain = ReferenceLlama.From(w);
        double[] plainLogits = [];
        foreach (var t in prompt.Concat(expected)) plainLogits = plain.Step(t);
        Assert.True(Compare.RelativeError(logits.Select(x => (float)x).ToArray(), plainLogits) > 1e-3);
    }

    /// <summary>--think on passkey and a batch line's "think" reach the engine: a batch line with think 0 is refused naming
    /// its field while the other line runs, and passkey with --think runs the shipped model.</summary>
    [Fact]
    public void The_think_flag_and_batch_field_reach_the_engine()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("b.jsonl"), "{\"id\":\"a\",\"prompt_ids\":[1,5],\"max_tokens\":3,\"think\":0}\n" +
            "{\"id\":\"b\",\"prompt_ids\":[1,5],\"max_tokens\":3,\"think\":0.5}\n");
        var c = TestModels.Config(dim: 32, hidden: 48, layers: 2, heads: 4, kvHeads: 2);
        TestModels.WriteLlama2c(dir.File("m.bin"), TestModels.Random(c, seed: 3));
        var (code, stdout, _) = CliRunner.Run("batch", "--model", dir.File("m.bin"), "--requests", dir.File("b.jsonl"), "--device",
            "cpu", "--json");
        Assert.Equal(2, code); // one line failed, the other ran
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Contains("think must be in (0, 1]", lines[0]);
        Assert.Contains("\"token_ids\"", lines[1]);
    }

    [Fact]
    public void ThinK_options_out_of_range_are_refused_naming_the_option()
    {
        var e = Assert.Throws<InvalidOptionException>(() => new ThinKOptions(0).Validate());
        Assert.Equal("KeptShare", e.Option);
        Assert.Equal(0.75, new ThinKOptions(0.5).FeatureShare(16));
    }
}
