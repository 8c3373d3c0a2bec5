using KvIlgpu.Cache;
using KvIlgpu.Compression;
using KvIlgpu.Engine;
using KvIlgpu.Projection;

namespace KvIlgpu.Evaluation;

/// <summary>Runs every policy at every budget on the same inputs, through the same engine path as serving
/// (teacher forcing and a logits tap on the scheduler).</summary>
public static class Evaluator
{
    /// <summary>Evaluates every policy at every budget (and the full cache) on the corpus segments and, with
    /// PasskeyTrials, the retrieval tasks; a fresh engine from newEngine serves each policy and budget. Options are
    /// validated first (<see cref="InvalidOptionException"/>).</summary>
    public static List<EvaluationRow> Run(Func<InferenceEngine> newEngine, IReadOnlyList<int> corpus, EvaluationOptions options,
        IProgress<(string Stage, int Done, int Total)>? progress = null)
    {
        if (options.Projections?.Any(p => p.Projection != null) == true)
            throw new InvalidOptionException(nameof(options.Projections),
                "evaluating projections needs an engine factory that takes the projection: use the overload with Func<KvProjection?, " +
                "KvStorageType, InferenceEngine>");
        return Run((_, _) => newEngine(), corpus, options with { Storages = null }, progress);
    }

    /// <summary>As the overload with the storage axis, every engine in the factory's own storage type.</summary>
    public static List<EvaluationRow> Run(Func<KvProjection?, InferenceEngine> newEngine, IReadOnlyList<int> corpus,
        EvaluationOptions options, IProgress<(string Stage, int Done, int Total)>? progress = null) =>
        Run((p, _) => newEngine(p), corpus, options with { Storages = null }, progress);

    /// <summary>As the overload without projections, crossed with the storage axis and the feature axis: every storage
    /// type of options.Storages (null: the engine's default), every projection of options.Projections at every dim budget
    /// of options.DimBudgets (or at its own searched ranks), with every policy and budget; newEngine makes an engine that
    /// stores its cache in the given type and whose requests go through the given projection (null: none). The full cache
    /// without projection in the first storage type (f32 when several are compared) runs first and is every row's KL
    /// reference.</summary>
    public static List<EvaluationRow> Run(Func<KvProjection?, KvStorageType, InferenceEngine> newEngine, IReadOnlyList<int> corpus,
        EvaluationOptions options, IProgress<(string Stage, int Done, int Total)>? progress = null)
    {
        options.Validate();
        int prefix = Math.Max(1, (int)(options.SegmentLength * options.PrefixFraction));
        bool retrieval = options.PasskeyTrials > 0;
        var segments = Enumerable.Range(0, Math.Min(options.Segments, corpus.Count / options.SegmentLength))
            .Select(i => corpus.Skip(i * options.SegmentLength).Take(options.SegmentLength).ToArray()).ToList();
        if (segments.Count == 0 && options.Segments > 0)
            throw new InvalidOptionException("Corpus",
                $"the corpus has {corpus.Count} tokens, fewer than one segment of {options.SegmentLength}");
        var tokenAxis = new List<(string Policy, string Budget)> { ("full", "-") };
        foreach (var p in options.Policies.Where(p => p != "full")) foreach (var b in options.Budgets) tokenAxis.Add((p, b));
        var featureAxis = new List<FeatureSetting> { new(null, null, "none", 1) };
        foreach (var choice in options.Projections ?? [])
            foreach (var setting in choice.Settings(options.DimBudgets ?? [1]))
                if (!featureAxis.Any(f => f.Name == setting.Name && f.DimBudget == setting.DimBudget)) featureAxis.Add(setting);
        // The reference storage first: f32 whenever named types are compared.
        var storages = options.Storages is { } named
            ? named.Contains(KvStorageType.Auto) ? named.ToList() : named.Prepend(KvStorageType.F32).Distinct().ToList()
            : [KvStorageType.Auto];
        var configs = storages.SelectMany(s => featureAxis.SelectMany(f => tokenAxis.Select(t => (Storage: s, Feature: f, t.Policy,
            t.Budget)))).ToList();
        // One step per corpus segment and, with retrieval, one for each of its two tasks.
        int total = configs.Count * (segments.Count + (retrieval ? 2 : 0)), done = 0;

        // Reference log-probabilities of the full cache, per segment and position.
        var reference = new List<float[][]>();
        var rows = new List<EvaluationRow>();
        double fullMeanBytes = 0, referenceBytesPerToken = 0;
        foreach (var (storage, feature, policy, budget) in configs)
        {
            using var engine = newEngine(feature.Projection, storage);
            bool isReference = reference.Count == 0 && referenceBytesPerToken == 0;
            if (isReference) referenceBytesPerToken = engine.KvBytesPerToken;
            double nll = 0, kl = 0, agree = 0;
            long count = 0, heldBlocks = 0, peakBytes = 0, bytesPerBlock = 0;
            var corpusKvs = new KvTally();
            var keptPerLayer = new double[engine.Config.Layers];
            for (int si = 0; si < segments.Count; si++)
            {
                var seg = segments[si];
                var logProbs = new float[seg.Length - prefix][];
                var compression = policy == "full" ? null
                    : CompressionOptions.ForPolicy(policy, options.Budget(budget, seg.Length));
                var gen = new GenerationOptions(seg.Length - prefix, SamplingOptions.Greedy, StopAtEos: false, compression,
                    ForcedTokens: seg[prefix..], OnLogits: (pos, logits) => logProbs[pos - prefix] = LogSoftmax(logits),
                    ThinK: feature.ThinK);
                var handle = engine.Submit(seg[..prefix], gen);
                var result = handle.Completion.GetAwaiter().GetResult();
                // What the segment held, from its own result: blocks over its decode steps, the peak, KVs per layer.
                var usage = result.KvUsage;
                heldBlocks += usage.BlockSteps;
                peakBytes = Math.Max(peakBytes, usage.PeakBytes);
                bytesPerBlock = usage.BytesPerBlock;
                for (int layer = 0; layer < keptPerLayer.Length; layer++) keptPerLayer[layer] += usage.KeptPerLayerSums[layer];
                if (isReference) reference.Add(logProbs);
                var refs = reference[si];
                for (int i = 0; i < logProbs.Length; i++)
                {
                    int target = seg[prefix + i];
                    nll -= logProbs[i][target];
                    kl += Kl(refs[i], logProbs[i]);
                    agree += ArgMax(refs[i]) == ArgMax(logProbs[i]) ? 1 : 0;
                    count++;
                }
                corpusKvs.Add(engine.Config.Layers * engine.Config.KvHeads, seg.Length, result.EvictedKvs);
                progress?.Report(("evaluating", ++done, total));
            }
            // Of the corpus runs, before the passkey prompts; block memory only, as the mean (the block tables are a
            // fixed allocation of the engine, the same for every policy).
            double? passkey = null, needle = null;
            var retrievalKvs = new KvTally();
            if (retrieval)
            {
                if (engine.Tokenizer != null)
                    passkey = Passkey.Accuracy(engine, options, policy, budget, kvs: retrievalKvs, thinK: feature.ThinK);
                progress?.Report(("passkey", ++done, total));
                if (engine.Tokenizer != null) needle = Passkey.Accuracy(engine, options, policy, budget, Passkey.MultiKeyNeedle,
                    retrievalKvs, feature.ThinK);
                progress?.Report(("multi-key needle", ++done, total));
            }
            // ThinK's pruned key channels are still held: they count at their nominal share. Everything else is measured.
            double thinKShare = feature.ThinK != null ? feature.FeatureShare(engine.Config.HeadDim) : 1;
            string storageName = engine.KvStorage.ToString().ToLowerInvariant();
            if (segments.Count > 0)
            {
                long meanBytes = heldBlocks * bytesPerBlock / count;
                if (isReference) fullMeanBytes = meanBytes;
                rows.Add(new EvaluationRow(policy, budget, corpusKvs.CompressionRatio, Math.Exp(nll / count), kl / count, agree / count,
                    passkey, peakBytes, needle, meanBytes, keptPerLayer.Select(k => k / count).ToArray(), feature.Name, feature.DimBudget,
                    meanBytes / fullMeanBytes * thinKShare, storageName));
            }
            else
                rows.Add(new EvaluationRow(policy, budget, retrievalKvs.CompressionRatio, null, null, null, passkey, null, needle,
                    Projection: feature.Name, DimBudget: feature.DimBudget, KvBytesFraction: engine.KvBytesPerToken
                        / referenceBytesPerToken * thinKShare / retrievalKvs.CompressionRatio, Storage: storageName));
        }
        return rows;
    }

    private static float[] LogSoftmax(float[] logits)
    {
        float max = logits.Max();
        double sum = 0;
        foreach (var v in logits) sum += Math.Exp(v - max);
        float logZ = max + (float)Math.Log(sum);
        return logits.Select(v => v - logZ).ToArray();
    }

    /// <summary>KL(p || q) for log-probabilities.</summary>
    private static double Kl(float[] logP, float[] logQ)
    {
        double kl = 0;
        for (int i = 0; i < logP.Length; i++) kl += Math.Exp(logP[i]) * (logP[i] - logQ[i]);
        return Math.Max(0, kl);
    }

    private static int ArgMax(float[] v)
    {
        int best = 0;
        for (int i = 1; i < v.Length; i++) if (v[i] > v[best]) best = i;
        return best;
    }
}
