using KvIlgpu.Models;
using KvIlgpu.Models.Loading;
using KvIlgpu.Models.Saving;
using KvIlgpu.Tests.Support;

namespace KvIlgpu.Tests.Models.Saving;

/// <summary>HuggingFaceFolderWriter's folders read back by the Hugging Face loader (tested on its own against folders the
/// tests write by HF's converter's permutation): the logits of the plain double-precision reference of the source model.</summary>
[Collection("backends")]
public class HuggingFaceFolderWriterTests
{
    [Theory]
    [InlineData(WeightType.F32, 1e-5)]
    [InlineData(WeightType.BF16, 5e-2)]
    public void An_interleaved_model_is_written_in_half_split_order_and_gives_the_same_logits(WeightType type, double tolerance)
    {
        var w = TestModels.Random(TestModels.Config(), seed: 43);
        Assert.Equal(RopeLayout.InterleavedPairs, w.Config.RopeLayout);
        using var dir = new TempDir();
        HuggingFaceFolderWriter.Write(dir.Path, w, type);
        var hf = ModelLoader.Load(dir.Path);
        Assert.Equal(RopeLayout.HalfSplit, hf.Config.RopeLayout);
        Assert.Equal(type, hf.Layers[0].Wq.Type);
        Assert.Equal(type, hf.TokenEmbedding.Type);
        Assert.Equal(WeightType.F32, hf.Layers[0].AttentionNorm.Type);
        AssertLogits(hf, ReferenceLlama.From(w), tolerance);
    }

    /// <summary>Qwen2-style q/k/v biases travel with their rows: the q and k biases are permuted like their matrices.</summary>
    [Fact]
    public void Attention_biases_are_written_and_permuted_with_their_rows()
    {
        var c = TestModels.Config() with { AttentionBias = true };
        var plain = TestModels.Random(c, seed: 44);
        var rng = new Random(45);
        WeightTensor Bias(string name, int n) => WeightTensor.FromF32(name, 1, n, Enumerable.Range(0, n)
            .Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray());
        var layers = plain.Layers.Select((l, i) => l with
        {
            Bq = Bias($"bq{i}", c.QDim),
            Bk = Bias($"bk{i}", c.KvDim),
            Bv = Bias($"bv{i}", c.KvDim),
        }).ToList();
        var w = new LlamaWeights(plain.Config, plain.TokenEmbedding, layers, plain.FinalNorm, plain.Output, "biased");
        using var dir = new TempDir();
        HuggingFaceFolderWriter.Write(dir.Path, w);
        var hf = ModelLoader.Load(dir.Path);
        Assert.True(hf.Config.AttentionBias);
        Assert.Contains("\"model_type\": \"qwen2\"", File.ReadAllText(Path.Combine(dir.Path, "config.json")));
        AssertLogits(hf, ReferenceLlama.From(w), 1e-5);
    }

    [Fact]
    public void Quantised_matrices_need_a_float_type()
    {
        var w = TestModels.Random(TestModels.Config(dim: 256, hidden: 512, vocab: 64), seed: 46);
        using var dir = new TempDir();
        TestModels.WriteGguf(dir.File("q.gguf"), w, GgufType.Q8_0);
        var q = ModelLoader.Load(dir.File("q.gguf"));
        var e = Assert.Throws<ArgumentException>(() => HuggingFaceFolderWriter.Write(dir.File("hf"), q));
        Assert.Contains("q8_0", e.Message, StringComparison.OrdinalIgnoreCase);
        HuggingFaceFolderWriter.Write(dir.File("hf"), q, WeightType.F16);
        var up = ModelLoader.Load(dir.File("hf")).Layers[0].WUp;
        Assert.Equal(WeightType.F16, up.Type);
        // The dequantised values, rounded to f16 (relative step 2^-11).
        Compare.Close(up.ToFloat(), q.Layers[0].WUp.ToFloat(), 1e-3, "w_up dequantised to f16");
    }

    private static void AssertLogits(LlamaWeights model, ReferenceLlama reference, double tolerance)
    {
        lock (Backends.Lock)
        {
            using var m = new LlamaModel(model, Backends.Get("cpu"));
            using var cache = m.CreateCache();
            int[] tokens = [1, 9, 33, 4, 17];
            var all = m.Forward(cache, tokens, allLogits: true);
            int v = model.Config.VocabSize;
            for (int i = 0; i < tokens.Length; i++)
                Compare.Close(all.AsSpan(i * v, v), reference.Step(tokens[i]).Select(x => (float)x).ToArray(), tolerance,
                    $"position {i}");
        }
    }
}
