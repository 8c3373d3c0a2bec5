using KvIlgpu.Engine;
using KvIlgpu.Models;

namespace KvIlgpu.Projection;

/// <summary>MatryoshkaKV's adaptive ranks under a budget (SPEC section 5): from full rank, repeatedly lower the one
/// (layer, KV head, K or V) rank whose step down by d/8 changes the next-token distribution least, measured as the mean
/// over the calibration prompts of each prompt's mean KL(full rank || candidate) over its scored positions
/// (teacher-forced), until the mean kept fraction of feature dims is at most the budget. Candidates are tried in a fixed
/// order and ties go to the first, so the search is deterministic; ranks never go below d/8. With keepAnswers, the
/// steps are first ranked by how many answer positions of the task prompts (<see cref="RankSearchPrompt.IsAnswer"/>) still
/// predict the full-rank model's greedy token, and only then by KL: a step that changes an answer is taken only when
/// every possible step does. A head whose cut costs little KL on average can still decide a retrieval (keys of the
/// first layer's first KV head on the default model), and the mean KL alone does not see that.</summary>
public static class RankSearch
{
    /// <summary>The search over prompts scored at every position (corpus text).</summary>
    public static KvProjection Search(InferenceEngine engine, KvProjection projection, double budget, IReadOnlyList<int[]> prompts,
        IProgress<(int Done, int Total)>? progress = null) =>
        Search(engine, projection, budget, [.. prompts.Select(RankSearchPrompt.Whole)], progress);

    /// <summary>The projection at searched ranks with KeptFraction at most budget (exactly budget when budget is a
    /// multiple of 1/(16 x layers x KV heads), as 1/2 and 1/4 are). progress reports steps taken of those needed.</summary>
    public static KvProjection Search(InferenceEngine engine, KvProjection projection, double budget,
        IReadOnlyList<RankSearchPrompt> prompts, IProgress<(int Done, int Total)>? progress = null, bool keepAnswers = false)
    {
        if (!(budget is > 0 and <= 1)) throw new InvalidOptionException("Budget", $"a rank budget must be in (0, 1], got {budget}");
        if (prompts.Count == 0) throw new ArgumentException("no calibration prompts", nameof(prompts));
        var model = engine.Model;
        var saved = model.Projection;
        int d = projection.HeadDim, step = Math.Max(1, d / 8), units = projection.Layers * projection.KvHeads;
        var keys = Enumerable.Repeat(d, units).ToArray();
        var values = Enumerable.Repeat(d, units).ToArray();
        double Fraction() => (keys.Sum() + values.Sum()) / (2.0 * units * d);
        int total = (int)Math.Ceiling((1 - budget) * 2 * units * d / step - 1e-9), done = 0;
        try
        {
            model.Projection = projection.WithRanks(keys, values);
            var reference = prompts.Select(p => LogProbabilities(model, p)).ToList();
            while (Fraction() > budget + 1e-12)
            {
                (int Kept, double Kl, int[] Ranks, int Unit) best = (-1, double.PositiveInfinity, keys, -1);
                foreach (var ranks in new[] { keys, values })
                    for (int u = 0; u < units; u++)
                    {
                        if (ranks[u] - step < step) continue;
                        ranks[u] -= step;
                        model.Projection = projection.WithRanks(keys, values);
                        var scores = prompts.Select((p, i) =>
                        {
                            var q = LogProbabilities(model, p);
                            return (Kl: MeanKl(reference[i], q), Kept: keepAnswers && p.IsAnswer ? SameGreedy(reference[i], q) : 0);
                        }).ToList();
                        double kl = scores.Average(x => x.Kl);
                        int kept = scores.Sum(x => x.Kept);
                        ranks[u] += step;
                        if (kept > best.Kept || (kept == best.Kept && kl < best.Kl)) best = (kept, kl, ranks, u);
                    }
                if (best.Unit < 0) break; // every rank at its floor
                best.Ranks[best.Unit] -= step;
                progress?.Report((++done, total));
            }
        }
        finally { model.Projection = saved; }
        return projection.WithRanks(keys, values, projection.Method);
    }

    /// <summary>Log-probabilities of the next token at the prompt's scored positions, [positions][vocabulary], from an
    /// empty cache.</summary>
    private static float[][] LogProbabilities(LlamaModel model, RankSearchPrompt prompt)
    {
        using var cache = model.CreateCache(prompt.Tokens.Length);
        var logits = model.Forward(cache, prompt.Tokens, allLogits: true);
        int vocab = model.Config.VocabSize;
        var result = new float[prompt.ScoredTo - prompt.ScoredFrom][];
        for (int t = 0; t < result.Length; t++)
        {
            var row = logits.AsSpan((prompt.ScoredFrom + t) * vocab, vocab);
            float max = float.NegativeInfinity;
            foreach (var v in row) max = Math.Max(max, v);
            double sum = 0;
            foreach (var v in row) sum += Math.Exp(v - max);
            float logZ = max + (float)Math.Log(sum);
            result[t] = new float[vocab];
            for (int i = 0; i < vocab; i++) result[t][i] = row[i] - logZ;
        }
        return result;
    }

    /// <summary>Positions where q's most likely token is p's.</summary>
    private static int SameGreedy(float[][] p, float[][] q)
    {
        int same = 0;
        for (int t = 0; t < p.Length; t++)
            if (System.Numerics.Tensors.TensorPrimitives.IndexOfMax(p[t]) == System.Numerics.Tensors.TensorPrimitives.IndexOfMax(q[t]))
                same++;
        return same;
    }

    private static double MeanKl(float[][] p, float[][] q)
    {
        double total = 0;
        for (int t = 0; t < p.Length; t++)
        {
            double kl = 0;
            for (int i = 0; i < p[t].Length; i++) kl += Math.Exp(p[t][i]) * (p[t][i] - q[t][i]);
            total += Math.Max(0, kl);
        }
        return total / p.Length;
    }
}
