using KvIlgpu.Models;
using KvIlgpu.Models.Loading;
using KvIlgpu.Models.Saving;
using KvIlgpu.Tests.Support;

namespace KvIlgpu.Tests.Models.Saving;

/// <summary>GgufWriter's files read back by the GGUF loader (which follows the format's specification and is tested
/// against files written by the tests' own writer): the same tensors, and the same logits as the source model.</summary>
[Collection("backends")]
public class GgufWriterTests
{
    [Fact]
    public void Quantised_blocks_are_written_as_they_were_loaded()
    {
        var w = TestModels.Random(TestModels.Config(dim: 256, hidden: 512, vocab: 64), seed: 41);
        using var dir = new TempDir();
        TestModels.WriteGguf(dir.File("a.gguf"), w, name => name.Contains("ffn_down") ? GgufType.Q6_K : GgufType.Q4_K);
        var a = ModelLoader.Load(dir.File("a.gguf"));
        GgufWriter.Write(dir.File("b.gguf"), a);
        var b = ModelLoader.Load(dir.File("b.gguf"));
        Assert.Equal(a.Config with { EosTokenIds = [] }, b.Config with { EosTokenIds = [] }); // records compare lists by reference
        Assert.Equal(a.Config.EosTokenIds, b.Config.EosTokenIds);
        foreach (var (x, y) in a.AllTensors().Zip(b.AllTensors()))
        {
            Assert.Equal(x.Type, y.Type);
            Assert.Equal(x.ToFloat(), y.ToFloat());
        }
    }

    [Theory]
    [InlineData(WeightType.F32, 1e-5)]
    [InlineData(WeightType.F16, 5e-3)]
    public void A_half_split_model_is_written_in_llama_cpp_order_and_gives_the_same_logits(WeightType type, double tolerance)
    {
        var w = TestModels.Random(TestModels.Config(), seed: 42);
        using var dir = new TempDir();
        TestModels.WriteHuggingFace(dir.Path, w, WeightType.F32);
        var hf = ModelLoader.Load(dir.Path);
        Assert.Equal(RopeLayout.HalfSplit, hf.Config.RopeLayout);
        GgufWriter.Write(dir.File("m.gguf"), hf, type);
        var gguf = ModelLoader.Load(dir.File("m.gguf"));
        Assert.Equal(RopeLayout.InterleavedPairs, gguf.Config.RopeLayout);
        Assert.Equal(type, gguf.Layers[0].Wq.Type);
        var reference = ReferenceLlama.From(w);
        lock (Backends.Lock)
        {
            using var model = new LlamaModel(gguf, Backends.Get("cpu"));
            using var cache = model.CreateCache();
            int[] tokens = [1, 9, 33, 4];
            var all = model.Forward(cache, tokens, allLogits: true);
            for (int i = 0; i < tokens.Length; i++)
                Compare.Close(all.AsSpan(i * w.Config.VocabSize, w.Config.VocabSize), reference.Step(tokens[i]).Select(v => (float)v)
                    .ToArray(), tolerance, $"position {i}");
        }
    }
}
