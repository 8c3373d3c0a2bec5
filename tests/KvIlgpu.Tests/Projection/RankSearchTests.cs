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

    /// <summary>A task prompt counts only at the positions that predict its answer: on a model and prompt where that
    /// changes which rank is cheapest to lower first (found among seeds here, every candidate measured from the engine's
    /// logits directly), the search follows the answer positions, and a whole-prompt search the whole prompt.</summary>
    [Fact]
    public void A_prompt_scored_at_its_answer_counts_only_those_positions()
    {
        var c = TestModels.Config(dim: 32, hidden: 48, layers: 2, heads: 4, kvHeads: 2, seq: 32);
        int d = c.HeadDim, step = d / 8, units = c.Layers * c.KvHeads, answer = 3;
        for (int seed = 0; seed < 40; seed++)
        {
            var w = TestModels.Random(c, seed: 100 + seed);
            var p = TestProjections.Random(c.Layers, c.KvHeads, d, seed: 200 + seed);
            var rng = new Random(seed);
            var prompt = Enumerable.Range(0, 20).Select(_ => rng.Next(c.VocabSize)).ToArray();
            int from = prompt.Length - answer - 1, to = prompt.Length - 1;
            float[] Run(KvProjection projection)
            {
                using var model = new KvIlgpu.Models.LlamaModel(w, new ManagedSimdBackend()) { Projection = projection };
                using var cache = model.CreateCache();
                return model.Forward(cache, prompt, allLogits: true);
            }
            var full = Run(p);
            // Candidates in the search's order: every unit's key, then every unit's value.
            var lows = Enumerable.Range(0, 2 * units).Select(k =>
            {
                var keys = Enumerable.Repeat(d, units).ToArray();
                var values = Enumerable.Repeat(d, units).ToArray();
                (k < units ? keys : values)[k % units] -= step;
                return Run(p.WithRanks(keys, values));
            }).ToList();
            int Cheapest(int first, int last)
            {
                int v = c.VocabSize, n = last - first;
                var costs = lows.Select(low => KvIlgpu.Training.ForwardBackward.KlDivergence(full.AsSpan(first * v, n * v).ToArray(),
                    low.AsSpan(first * v, n * v).ToArray(), new float[n * v], v)).ToList();
                return costs.IndexOf(costs.Min());
            }
            int atAnswer = Cheapest(from, to), overall = Cheapest(0, prompt.Length);
            if (atAnswer == overall) continue;
            using var engine = InferenceEngine.FromWeights(w, new EngineOptions(DeviceKind.Cpu));
            double oneStep = 1 - 1.0 / (16 * units);
            int Lowered(KvProjection searched) => Enumerable.Range(0, 2 * units).Single(k =>
                searched.Rank(k < units ? KvPart.Key : KvPart.Value, k % units / c.KvHeads, k % units % c.KvHeads) == d - step);
            Assert.Equal(atAnswer, Lowered(RankSearch.Search(engine, p, oneStep, [RankSearchPrompt.Answer(prompt, answer)])));
            Assert.Equal(overall, Lowered(RankSearch.Search(engine, p, oneStep, [prompt])));
            return;
        }
        Assert.Fail("no seed where the answer positions and the whole prompt disagree");
    }

    /// <summary>With keepAnswers, a step that changes the full model's greedy token at an answer position is taken only
    /// when every step does: on a model and prompt where the cheapest first step by KL changes one and another step keeps
    /// them all (found among seeds, every candidate measured from the engine's logits directly), the search takes the
    /// cheapest of those that keep the most, and without keepAnswers the cheapest.</summary>
    [Fact]
    public void Keeping_answers_takes_the_cheapest_step_among_those_that_keep_the_most_greedy_answers()
    {
        var c = TestModels.Config(dim: 32, hidden: 48, layers: 2, heads: 4, kvHeads: 2, seq: 32);
        int d = c.HeadDim, step = d / 8, units = c.Layers * c.KvHeads, answer = 8, v = c.VocabSize;
        for (int seed = 0; seed < 200; seed++)
        {
            var w = TestModels.Random(c, seed: 300 + seed);
            var p = TestProjections.Random(c.Layers, c.KvHeads, d, seed: 400 + seed);
            var rng = new Random(seed);
            var prompt = Enumerable.Range(0, 24).Select(_ => rng.Next(v)).ToArray();
            int from = prompt.Length - answer - 1;
            float[] Run(KvProjection projection)
            {
                using var model = new KvIlgpu.Models.LlamaModel(w, new ManagedSimdBackend()) { Projection = projection };
                using var cache = model.CreateCache();
                return model.Forward(cache, prompt, allLogits: true).AsSpan(from * v, answer * v).ToArray();
            }
            var full = Run(p);
            static int Greedy(float[] logits, int t, int v) =>
                Array.IndexOf(logits, logits.AsSpan(t * v, v).ToArray().Max(), t * v) - t * v;
            var candidates = Enumerable.Range(0, 2 * units).Select(k =>
            {
                var keys = Enumerable.Repeat(d, units).ToArray();
                var values = Enumerable.Repeat(d, units).ToArray();
                (k < units ? keys : values)[k % units] -= step;
                var low = Run(p.WithRanks(keys, values));
                double kl = KvIlgpu.Training.ForwardBackward.KlDivergence(full, low, new float[low.Length], v);
                int kept = Enumerable.Range(0, answer).Count(t => Greedy(full, t, v) == Greedy(low, t, v));
                return (Kl: kl, Kept: kept);
            }).ToList();
            int cheapest = candidates.IndexOf(candidates.MinBy(x => x.Kl));
            int most = candidates.Max(x => x.Kept);
            if (candidates[cheapest].Kept == most) continue;
            int keeping = candidates.IndexOf(candidates.Where(x => x.Kept == most).MinBy(x => x.Kl));
            using var engine = InferenceEngine.FromWeights(w, new EngineOptions(DeviceKind.Cpu));
            double oneStep = 1 - 1.0 / (16 * units);
            int Lowered(KvProjection searched) => Enumerable.Range(0, 2 * units).Single(k =>
                searched.Rank(k < units ? KvPart.Key : KvPart.Value, k % units / c.KvHeads, k % units % c.KvHeads) == d - step);
            var task = RankSearchPrompt.Answer(prompt, answer);
            Assert.Equal(keeping, Lowered(RankSearch.Search(engine, p, oneStep, [task], keepAnswers: true)));
            Assert.Equal(cheapest, Lowered(RankSearch.Search(engine, p, oneStep, [task])));
            return;
        }
        Assert.Fail("no seed where the cheapest step changes a greedy answer that another step keeps");
    }

    /// <summary>The synthetic calibration tasks are scored at their answers, which every task (passkey, needle, copy)
    /// states earlier in its prompt; a task too long for the length falls back to a corpus window scored whole.</summary>
    [Fact]
    public void Task_prompts_are_scored_at_answers_stated_earlier_and_deterministic()
    {
        var texts = Enumerable.Range(0, 20).Select(i => string.Join(" ", Enumerable.Range(0, 12).Select(j =>
            $"The cat sat on the mat number {i + j}. The other cat ate the rat, then slept by the door for {j % 7} hours."))).ToList();
        using var dir = new TempDir();
        KvIlgpu.Tokenization.ByteLevelBpeTrainer.Save(KvIlgpu.Tokenization.ByteLevelBpeTrainer.Train(texts, 300, ["<|bos|>"]),
            dir.File("tokenizer.json"));
        var tok = new KvIlgpu.Tokenization.ByteLevelBpeTextTokenizer(dir.File("tokenizer.json"));
        File.WriteAllText(dir.File("corpus.txt"), string.Join("\n\n", texts));
        var ids = tok.Encode(string.Join(" ", texts)).ToArray();
        var a = RankSearchPrompt.Tasks(dir.File("corpus.txt"), tok, ids, bos: 0, count: 8, length: 256);
        var b = RankSearchPrompt.Tasks(dir.File("corpus.txt"), tok, ids, bos: 0, count: 8, length: 256);
        Assert.Equal(8, a.Count);
        Assert.Equal(a.Select(x => string.Join(",", x.Tokens)), b.Select(x => string.Join(",", x.Tokens)));
        int tasks = 0;
        foreach (var prompt in a)
        {
            Assert.True(prompt.Tokens.Length <= 256, $"{prompt.Tokens.Length} tokens");
            if (prompt.ScoredFrom == 0 && prompt.ScoredTo == prompt.Tokens.Length) continue; // a corpus window
            tasks++;
            Assert.Equal(prompt.Tokens.Length - 1, prompt.ScoredTo);
            // Positions ScoredFrom .. ScoredTo - 1 predict the answer's tokens, the prompt's last ones.
            string answer = tok.Decode(prompt.Tokens[(prompt.ScoredFrom + 1)..]).Trim().TrimEnd('.');
            string before = tok.Decode(prompt.Tokens[..(prompt.ScoredFrom + 1)]);
            Assert.True(answer.Length > 0 && before.Contains(answer), $"answer '{answer}' not stated in '{before}'");
        }
        Assert.True(tasks >= 4, $"{tasks} of 8 prompts are tasks");
    }
}
