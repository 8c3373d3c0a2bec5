using KvIlgpu.Compute;
using KvIlgpu.Engine;
using KvIlgpu.Models;
using KvIlgpu.Tests.Support;

namespace KvIlgpu.Tests.Projection;

/// <summary>The engine's projected attention against the plain reference, which stores the projected coordinates
/// themselves (SPEC section 5 written out in ReferenceLlama), on every backend, for MHA and GQA.</summary>
[Collection("backends")] // shares ILGPU's CPU accelerator, which takes one caller at a time
public class ProjectedAttentionTests
{
    public static TheoryData<string, int> Cases => new() { { "cpu", 4 }, { "cpu", 2 }, { "ilgpu-cpu", 4 }, { "ilgpu-cpu", 2 } };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Projected_logits_equal_the_reference_that_caches_projected_coordinates(string backend, int kvHeads)
    {
        var c = TestModels.Config(dim: 32, hidden: 48, layers: 2, heads: 4, kvHeads: kvHeads, seq: 24);
        var w = TestModels.Random(c, seed: 3);
        var p = TestProjections.Random(c.Layers, c.KvHeads, c.HeadDim, seed: 5, rank: rng => 1 + rng.Next(c.HeadDim));
        var reference = ReferenceLlama.From(w);
        reference.Projection = p;
        int[] tokens = [1, 9, 4, 22, 7, 13, 30, 2, 17, 5];
        var expected = tokens.Select(t => reference.Step(t)).ToArray();
        var plain = ReferenceLlama.From(w);
        var unprojected = tokens.Select(t => plain.Step(t)).ToArray();
        Assert.True(Compare.RelativeError(expected[^1].Select(x => (float)x).ToArray(), unprojected[^1]) > 1e-2,
            "the projection must change the logits for this test to mean anything");
        lock (Backends.Lock)
        {
            using var model = new LlamaModel(w, Backends.Get(backend)) { Projection = p };
            using var cache = model.CreateCache();
            var logits = model.Forward(cache, tokens, allLogits: true);
            for (int t = 0; t < tokens.Length; t++)
                Compare.Close(logits.AsSpan(t * c.VocabSize, c.VocabSize), expected[t].Select(x => (float)x).ToArray(), 1e-4,
                    $"{backend} position {t}");
        }
    }

    /// <summary>Through the engine's paged cache, where each (layer, KV head) stores only its own ranks' coordinates (a
    /// cache of heads of different widths), greedy tokens follow the reference's.</summary>
    [Theory]
    [InlineData(DeviceKind.Cpu)]
    [InlineData(DeviceKind.IlgpuCpu)]
    public async Task Paged_generation_with_a_projection_follows_the_reference_greedy_path(DeviceKind device)
    {
        var c = TestModels.Config(dim: 32, hidden: 48, layers: 2, heads: 4, kvHeads: 2, seq: 40);
        var w = TestModels.Random(c, seed: 11);
        var p = TestProjections.Random(c.Layers, c.KvHeads, c.HeadDim, seed: 2, rank: rng => 2 + rng.Next(c.HeadDim - 2));
        var reference = ReferenceLlama.From(w);
        reference.Projection = p;
        int[] prompt = [1, 7, 3, 12];
        double[] logits = [];
        foreach (var t in prompt) logits = reference.Step(t);
        var expected = new List<int>();
        for (int i = 0; i < 12; i++)
        {
            int next = Array.IndexOf(logits, logits.Max());
            expected.Add(next);
            logits = reference.Step(next);
        }
        using var engine = InferenceEngine.FromWeights(w, new EngineOptions(device, KvProjection: p));
        Assert.True(Enumerable.Range(0, c.Layers).SelectMany(l => Enumerable.Range(0, c.KvHeads).Select(h => engine.Cache.Shape(l, h)))
            .Select(s => (s.KeyWidth, s.ValueWidth)).SequenceEqual(Enumerable.Range(0, c.Layers * c.KvHeads).Select(i =>
                (p.AllRanks(KvIlgpu.Projection.KvPart.Key)[i], p.AllRanks(KvIlgpu.Projection.KvPart.Value)[i]))),
            "each head stores its own ranks");
        var got = new List<int>();
        await foreach (var t in engine.GenerateAsync(prompt, new GenerationOptions(12, StopAtEos: false))) got.Add(t.Id);
        Assert.Equal(expected, got);
    }

    [Theory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void At_full_rank_a_projection_leaves_the_logits_unchanged(string backend)
    {
        var c = TestModels.Config(dim: 32, hidden: 48, layers: 2, heads: 4, kvHeads: 2, seq: 24);
        var w = TestModels.Random(c, seed: 4);
        var p = TestProjections.Random(c.Layers, c.KvHeads, c.HeadDim, seed: 9);
        int[] tokens = [1, 5, 9, 2, 30, 11];
        lock (Backends.Lock)
        {
            using var plain = new LlamaModel(w, Backends.Get(backend));
            using var cache = plain.CreateCache();
            var expected = plain.Forward(cache, tokens, allLogits: true);
            using var projected = new LlamaModel(w, Backends.Get(backend)) { Projection = p };
            using var cache2 = projected.CreateCache();
            Compare.Close(projected.Forward(cache2, tokens, allLogits: true), expected, 1e-4, backend);
        }
    }

    [Fact]
    public void A_projection_of_another_shape_is_refused_naming_both_shapes()
    {
        var c = TestModels.Config(dim: 32, hidden: 48, layers: 2, heads: 4, kvHeads: 2);
        var w = TestModels.Random(c, seed: 1);
        var p = TestProjections.Random(3, c.KvHeads, c.HeadDim, seed: 1);
        var options = new EngineOptions(DeviceKind.Cpu, KvProjection: p);
        var e = Assert.Throws<InvalidModelException>(() => InferenceEngine.FromWeights(w, options));
        Assert.Contains("3 layers", e.Message);
        Assert.Contains("2 x 2 x 8", e.Message);
    }
}
