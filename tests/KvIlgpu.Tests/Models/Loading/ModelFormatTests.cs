using KvIlgpu.Models;
using KvIlgpu.Models.Loading;
using KvIlgpu.Tests.Support;

namespace KvIlgpu.Tests.Models.Loading;

/// <summary>The same random GQA model written in every supported format, loaded back, and run against the plain
/// C# reference forward pass of the original f32 weights.</summary>
[Collection("backends")]
public class ModelFormatTests
{
    private static readonly int[] Tokens = [1, 17, 33, 5, 60, 2, 9];

    private static void AssertMatchesReference(LlamaWeights original, LlamaWeights loaded, string backend, double tolerance)
    {
        var reference = ReferenceLlama.From(original);
        lock (Backends.Lock)
        {
            using var model = new LlamaModel(loaded, Backends.Get(backend), maxChunkRows: 4);
            using var cache = model.CreateCache();
            int vocab = original.Config.VocabSize;
            var tokens = Tokens.Select(t => t % vocab).ToArray();
            var all = model.Forward(cache, tokens, allLogits: true);
            for (int i = 0; i < tokens.Length; i++)
                Compare.Close(all.AsSpan(i * vocab, vocab), reference.Step(tokens[i]).Select(v => (float)v).ToArray(), tolerance,
                    $"position {i}");
        }
    }

    [Theory]
    [InlineData(false, "cpu")]
    [InlineData(true, "ilgpu-cpu")]
    public void Llama2c_checkpoint_round_trips(bool tied, string backend)
    {
        var w = TestModels.Random(TestModels.Config(), seed: 11, tied);
        using var dir = new TempDir();
        TestModels.WriteLlama2c(dir.File("m.bin"), w);
        var loaded = ModelLoader.Load(dir.File("m.bin"));
        Assert.Equal(tied, loaded.Config.TiedEmbeddings);
        var c = w.Config;
        long perLayer = 2L * c.Dim + 2L * c.QDim * c.Dim + 2L * c.KvDim * c.Dim + 3L * c.Dim * c.HiddenDim;
        Assert.Equal((long)c.VocabSize * c.Dim * (tied ? 1 : 2) + c.Layers * perLayer + c.Dim, loaded.ParameterCount);
        AssertMatchesReference(w, loaded, backend, 1e-4);
    }

    [Theory]
    [InlineData(WeightType.F32, false, "cpu", 1e-4)]
    [InlineData(WeightType.F32, true, "ilgpu-cpu", 1e-4)]
    [InlineData(WeightType.BF16, false, "cpu", 3e-2)]
    [InlineData(WeightType.BF16, true, "ilgpu-cpu", 3e-2)]
    public void HuggingFace_safetensors_with_permuted_qk_round_trip(WeightType type, bool sharded, string backend, double tolerance)
    {
        var w = TestModels.Random(TestModels.Config(), seed: 12);
        using var dir = new TempDir();
        TestModels.WriteHuggingFace(dir.Path, w, type, sharded);
        var loaded = ModelLoader.Load(dir.Path);
        Assert.Equal(RopeLayout.HalfSplit, loaded.Config.RopeLayout);
        Assert.Equal(type, loaded.Layers[0].Wq.Type); // 16-bit weights stay 16-bit on the device
        AssertMatchesReference(w, loaded, backend, tolerance);
    }

    [Theory]
    [InlineData(GgufType.F32, "cpu", 1e-4)]
    [InlineData(GgufType.F16, "ilgpu-cpu", 5e-3)]
    [InlineData(GgufType.Q8_0, "cpu", 3e-2)]
    public void Gguf_round_trips(GgufType type, string backend, double tolerance)
    {
        var w = TestModels.Random(TestModels.Config(dim: 64, hidden: 96), seed: 13);
        using var dir = new TempDir();
        TestModels.WriteGguf(dir.File("m.gguf"), w, type);
        var loaded = ModelLoader.Load(dir.File("m.gguf"));
        AssertMatchesReference(w, loaded, backend, tolerance);
    }

    [Fact]
    public void Mha_and_other_shapes_match_reference()
    {
        foreach (var (c, seed) in new[] { (TestModels.Config(dim: 32, heads: 4, kvHeads: 4, layers: 1), 21), (TestModels.Config(dim: 72,
            hidden: 50, heads: 6, kvHeads: 1, layers: 3, vocab: 37), 22) })
        {
            var w = TestModels.Random(c, seed);
            AssertMatchesReference(w, w, "cpu", 1e-4);
            AssertMatchesReference(w, w, "ilgpu-cpu", 1e-4);
        }
    }
}
