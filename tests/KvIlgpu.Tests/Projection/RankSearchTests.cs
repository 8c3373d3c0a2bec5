using KvIlgpu.Compute;
using KvIlgpu.Engine;
using KvIlgpu.Projection;
using KvIlgpu.Tests.Support;

namespace KvIlgpu.Tests.Projection;

public class RankSearchTests
{
    [Theory]
    [InlineData(0.5)]
    [InlineData(0.25)]
    public void The_search_meets_its_budget_exactly_deterministically_in_steps_of_an_eighth(double budget)
    {
        var c = TestModels.Config(dim: 32, hidden: 48, layers: 2, heads: 4, kvHeads: 2, seq: 32);
        var w = TestModels.Random(c, seed: 12);
        var p = TestProjections.Random(c.Layers, c.KvHeads, c.HeadDim, seed: 4);
        var rng = new Random(3);
        var prompts = Enumerable.Range(0, 2).Select(_ => Enumerable.Range(0, 24).Select(_ => rng.Next(c.VocabSize)).ToArray()).ToList();
        using var engine = InferenceEngine.FromWeights(w, new EngineOptions(DeviceKind.Cpu));
        var first = RankSearch.Search(engine, p, budget, prompts);
        var second = RankSearch.Search(engine, p, budget, prompts);
        Assert.Equal(budget, first.KeptFraction, 12);
        Assert.Equal(first.AllRanks(KvPart.Key), second.AllRanks(KvPart.Key));
        Assert.Equal(first.AllRanks(KvPart.Value), second.AllRanks(KvPart.Value));
        Assert.All(first.AllRanks(KvPart.Key).Concat(first.AllRanks(KvPart.Value)), r => Assert.True(r % (c.HeadDim / 8) == 0 && r >= 1));
        Assert.Null(engine.KvProjection); // the engine is left as it was
    }

    [Fact]
    public void Each_step_lowers_the_rank_whose_loss_of_a_step_costs_least()
    {
        // One layer, one KV head: the search's first step must be the cheaper of lowering K or V by d/8, as measured
        // here from the engine's logits directly.
        var c = TestModels.Config(dim: 16, hidden: 32, layers: 1, heads: 2, kvHeads: 1, seq: 32);
        var w = TestModels.Random(c, seed: 7);
        var p = TestProjections.Random(1, 1, c.HeadDim, seed: 8);
        var rng = new Random(1);
        var prompt = Enumerable.Range(0, 20).Select(_ => rng.Next(c.VocabSize)).ToArray();
        using var engine = InferenceEngine.FromWeights(w, new EngineOptions(DeviceKind.Cpu));
        int d = c.HeadDim, step = d / 8;
        var searched = RankSearch.Search(engine, p, 1 - 1.0 / 16, [prompt]);
        double Cost(int rk, int rv)
        {
            float[] Run(KvProjection projection)
            {
                using var model = new KvIlgpu.Models.LlamaModel(w, new ManagedSimdBackend()) { Projection = projection };
                using var cache = model.CreateCache();
                return model.Forward(cache, prompt, allLogits: true);
            }
            var (full, low) = (Run(p), Run(p.WithRanks([rk], [rv])));
            return KvIlgpu.Training.ForwardBackward.KlDivergence(full, low, new float[low.Length], c.VocabSize);
        }
        bool keyCheaper = Cost(d - step, d) <= Cost(d, d - step);
        Assert.Equal(keyCheaper ? d - step : d, searched.Rank(KvPart.Key, 0, 0));
        Assert.Equal(keyCheaper ? d : d - step, searched.Rank(KvPart.Value, 0, 0));
    }
}
