using System.Globalization;
using System.Text;
using KvIlgpu.Compression;
using KvIlgpu.Engine;
using KvIlgpu.Tokenization;

namespace KvIlgpu.Evaluation;

/// <summary>What to evaluate. Budgets are "1/N" (a fraction of each sequence's length, per KV head) or a token count.
/// The protected window (ProtectedShare of each budget, a quarter by default; ProtectedWindow tokens when the share is
/// null) and Sinks apply to every policy alike (a policy may protect more sinks of its own).</summary>
public sealed record EvaluationOptions(
    IReadOnlyList<string> Policies,
    IReadOnlyList<string> Budgets,
    int SegmentLength = 512,
    int Segments = 4,
    double PrefixFraction = 0.25,
    int ProtectedWindow = 32,
    int PasskeyTrials = 0,
    IReadOnlyList<int>? PasskeyLengths = null,
    IReadOnlyList<double>? PasskeyDepths = null,
    int Sinks = 0,
    double? ProtectedShare = 0.25)
{
    /// <summary>Per-head token budget for a sequence of the given length.</summary>
    public static int BudgetTokens(string budget, int length)
    {
        if (TryParseShare(budget, out var p, out var d) && p == 1) return Math.Max(1, (int)(length / d));
        if (int.TryParse(budget, out var n) && n > 0) return n;
        throw new ArgumentException($"--budgets: '{budget}' is neither 1/N nor a positive token count");
    }

    /// <summary>The eviction budget of one budget entry for a sequence of the given length.</summary>
    public EvictionBudget Budget(string budget, int length)
    {
        int tokens = BudgetTokens(budget, length);
        return new(tokens, ProtectedWindow: ProtectedShare is double share ? (int)(tokens * share) : ProtectedWindow, Sinks: Sinks);
    }

    /// <summary>Parses a protected window written as a token count ("32") or a share P/Q of each budget ("1/2": half
    /// of every head's budget is the recent window, the rest is chosen by the policy, as H2O splits its cache; "3/4").
    /// </summary>
    public static (int Tokens, double? Share) ParseProtectedWindow(string value)
    {
        if (TryParseShare(value, out var p, out var q)) return (0, p / q);
        if (int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var n)) return (n, null);
        throw new ArgumentException($"--protected-window: '{value}' is neither a token count nor a share P/Q (at most 1) of the budget");
    }

    /// <summary>Reads a share of the whole written "P/Q" (any numbers with P from 0 to Q), the spelling of budgets ("1/N") and
    /// of protected windows.</summary>
    private static bool TryParseShare(string value, out double p, out double q)
    {
        p = q = 0;
        var parts = value.Split('/');
        return parts.Length == 2
            && double.TryParse(parts[0], NumberStyles.Float, CultureInfo.InvariantCulture, out p)
            && double.TryParse(parts[1], NumberStyles.Float, CultureInfo.InvariantCulture, out q)
            && p >= 0 && q > 0 && p <= q;
    }
}

/// <summary>One (policy, budget) result. Perplexity, KL(full || compressed) and top-1 agreement come from
/// teacher-forced corpus segments whose cache is compressed as the context grows; passkey accuracy from greedy
/// retrieval. A retrieval-only run (no corpus segments) leaves the corpus columns null and measures the compression
/// ratio on the retrieval prompts instead. MeanKvBytes is the KV block memory the sequence held, averaged over the
/// decode steps of the corpus segments (what the budget controls); PeakKvBytes is the most it held, usually at the end
/// of a prefill, before its compression. Both count K, V, position and metric of the blocks held; the engine's fixed
/// block tables are left out. KeptPerLayer is where the budget went: the KVs each layer held per KV head, averaged over
/// the decode steps of the corpus segments.</summary>
public sealed record EvaluationRow(string Policy, string Budget, double CompressionRatio, double? Perplexity, double? KlToFull,
    double? Top1Agreement, double? PasskeyAccuracy, long? PeakKvBytes, double? NeedleAccuracy = null, long? MeanKvBytes = null,
    IReadOnlyList<double>? KeptPerLayer = null);

/// <summary>KVs that runs would hold with a full cache, and the KVs they held after eviction, summed over runs.</summary>
public sealed class KvTally
{
    public long Full { get; private set; }
    public long Held { get; private set; }
    public double CompressionRatio => Full / (double)Math.Max(1, Held);

    /// <summary>One sequence of the given length across heads (layer, KV head) pairs, of which evicted KVs were dropped.</summary>
    public void Add(long heads, long length, long evicted)
    {
        Full += heads * length;
        Held += heads * length - evicted;
    }
}

/// <summary>Runs every policy at every budget on the same inputs, through the same engine path as serving
/// (teacher forcing and a logits tap on the scheduler).</summary>
public static class Evaluator
{
    public static List<EvaluationRow> Run(Func<InferenceEngine> newEngine, IReadOnlyList<int> corpus, EvaluationOptions options,
        IProgress<(string Stage, int Done, int Total)>? progress = null)
    {
        int prefix = Math.Max(1, (int)(options.SegmentLength * options.PrefixFraction));
        if (!(options.PrefixFraction is > 0 and < 1) || prefix >= options.SegmentLength)
            throw new ArgumentException($"--prompt-share: {options.PrefixFraction} of a {options.SegmentLength}-token segment must leave " +
                "a prompt and at least one token to score (a share between 0 and 1, exclusive)");
        bool retrieval = options.PasskeyTrials > 0;
        if (options.Segments < 0) throw new ArgumentException($"--segments: {options.Segments} is negative");
        if (options.Segments == 0 && !retrieval)
            throw new ArgumentException("--segments 0 runs only the retrieval tasks, so it needs --passkey-trials N with N > 0");
        var segments = Enumerable.Range(0, Math.Min(options.Segments, corpus.Count / options.SegmentLength))
            .Select(i => corpus.Skip(i * options.SegmentLength).Take(options.SegmentLength).ToArray()).ToList();
        if (segments.Count == 0 && options.Segments > 0)
            throw new ArgumentException($"the corpus has {corpus.Count} tokens, fewer than one segment of {options.SegmentLength}");
        var configs = new List<(string Policy, string Budget)> { ("full", "-") };
        foreach (var p in options.Policies.Where(p => p != "full")) foreach (var b in options.Budgets) configs.Add((p, b));
        // One step per corpus segment and, with retrieval, one for each of its two tasks.
        int total = configs.Count * (segments.Count + (retrieval ? 2 : 0)), done = 0;

        // Reference log-probabilities of the full cache, per segment and position.
        var reference = new List<float[][]>();
        var rows = new List<EvaluationRow>();
        foreach (var (policy, budget) in configs)
        {
            using var engine = newEngine();
            double nll = 0, kl = 0, agree = 0;
            long count = 0, heldBlocks = 0;
            var corpusKvs = new KvTally();
            var keptPerLayer = new double[engine.Config.Layers];
            for (int si = 0; si < segments.Count; si++)
            {
                var seg = segments[si];
                var logProbs = new float[seg.Length - prefix][];
                var compression = policy == "full" ? null
                    : CompressionOptions.ForPolicy(policy, options.Budget(budget, seg.Length));
                var gen = new GenerationOptions(seg.Length - prefix, SamplingOptions.Greedy, StopAtEos: false, compression,
                    ForcedTokens: seg[prefix..], OnLogits: (pos, logits) =>
                    {
                        logProbs[pos - prefix] = LogSoftmax(logits);
                        heldBlocks += engine.Cache.Pool.Used; // this segment is the only sequence in the engine
                        AddKeptPerLayer(engine, keptPerLayer);
                    });
                var handle = engine.Submit(seg[..prefix], gen);
                var result = handle.Completion.GetAwaiter().GetResult();
                if (policy == "full") reference.Add(logProbs);
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
            long peak = engine.Cache.PeakBlocksUsed * engine.Cache.BytesPerBlock;
            double? passkey = null, needle = null;
            var retrievalKvs = new KvTally();
            if (retrieval)
            {
                if (engine.Tokenizer != null) passkey = Passkey.Accuracy(engine, options, policy, budget, kvs: retrievalKvs);
                progress?.Report(("passkey", ++done, total));
                if (engine.Tokenizer != null) needle = Passkey.Accuracy(engine, options, policy, budget, Passkey.MultiKeyNeedle, retrievalKvs);
                progress?.Report(("multi-key needle", ++done, total));
            }
            rows.Add(segments.Count > 0
                ? new EvaluationRow(policy, budget, corpusKvs.CompressionRatio, Math.Exp(nll / count), kl / count, agree / count,
                    passkey, peak, needle, heldBlocks * engine.Cache.BytesPerBlock / count, keptPerLayer.Select(k => k / count).ToArray())
                : new EvaluationRow(policy, budget, retrievalKvs.CompressionRatio, null, null, null, passkey, null, needle));
        }
        return rows;
    }

    /// <summary>Adds the KVs each layer of the engine's only sequence holds now, per KV head.</summary>
    private static void AddKeptPerLayer(InferenceEngine engine, double[] keptPerLayer)
    {
        var cache = engine.Cache;
        int sequence = cache.SequencesInUse.Single(), kvHeads = engine.Config.KvHeads;
        for (int layer = 0; layer < keptPerLayer.Length; layer++)
            for (int head = 0; head < kvHeads; head++)
                keptPerLayer[layer] += cache.Length(sequence, layer, head) / (double)kvHeads;
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

    public static string Markdown(IReadOnlyList<EvaluationRow> rows)
    {
        var sb = new StringBuilder();
        sb.AppendLine("| policy | budget | compression | perplexity | KL to full | top-1 agreement | passkey | multi-key needle | mean KV bytes | peak KV bytes |");
        sb.AppendLine("|---|---|---|---|---|---|---|---|---|---|");
        static string F(IFormattable? v, string format) => v?.ToString(format, CultureInfo.InvariantCulture) ?? "-";
        foreach (var r in rows)
            sb.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"| {r.Policy} | {r.Budget} | {r.CompressionRatio:F2}x | {F(r.Perplexity, "F3")} | {F(r.KlToFull, "F4")} | {F(r.Top1Agreement, "P1")} | {F(r.PasskeyAccuracy, "P0")} | {F(r.NeedleAccuracy, "P0")} | {F(r.MeanKvBytes, "N0")} | {F(r.PeakKvBytes, "N0")} |"));
        return sb.ToString();
    }

    public static string Csv(IReadOnlyList<EvaluationRow> rows)
    {
        static string C(IFormattable? v) => v?.ToString(v is double ? "R" : null, CultureInfo.InvariantCulture) ?? "";
        var sb = new StringBuilder("policy,budget,compression_ratio,perplexity,kl_to_full,top1_agreement,passkey_accuracy,needle_accuracy,mean_kv_bytes,peak_kv_bytes,kept_per_layer\n");
        foreach (var r in rows)
            sb.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"{r.Policy},{r.Budget},{r.CompressionRatio:R},{C(r.Perplexity)},{C(r.KlToFull)},{C(r.Top1Agreement)},{C(r.PasskeyAccuracy)},{C(r.NeedleAccuracy)},{C(r.MeanKvBytes)},{C(r.PeakKvBytes)},{string.Join(";", (r.KeptPerLayer ?? []).Select(k => k.ToString("0.##", CultureInfo.InvariantCulture)))}"));
        return sb.ToString();
    }

    /// <summary>KL to the full cache against compression ratio, one line per policy.</summary>
    public static void Plot(string path, IReadOnlyList<EvaluationRow> rows) => Plot(path, rows, "KL to the full cache vs compression", "mean KL(full || compressed)", r => r.KlToFull);

    /// <summary>One score against compression ratio, one line per policy (rows without the score are left out).</summary>
    public static void Plot(string path, IReadOnlyList<EvaluationRow> rows, string title, string yLabel, Func<EvaluationRow, double?> score) =>
        SvgPlot.Write(path, title, "compression ratio (full KVs / kept KVs)", yLabel,
            rows.Where(r => r.Policy != "full" && score(r) != null).GroupBy(r => r.Policy)
                .ToDictionary(g => g.Key, g => (IReadOnlyList<(double X, double Y)>)g.Select(r => (r.CompressionRatio, score(r)!.Value)).ToList()));
}

/// <summary>Passkey retrieval: a number stated once at a chosen depth of filler text, asked for at the end; greedy
/// decoding must reproduce it.</summary>
public static class Passkey
{
    private const string Filler = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. ";

    /// <summary>Builds one retrieval prompt of about length tokens with the fact asked for at relative depth; returns
    /// the prompt and the answer the greedy continuation must contain.</summary>
    public delegate (List<int> Prompt, string Answer) TaskBuilder(ITextTokenizer tok, int length, double depth, Random rng);

    /// <summary>Mean accuracy over the options' lengths and depths for one policy and budget (the passkey task unless
    /// another is given).</summary>
    public static double Accuracy(InferenceEngine engine, EvaluationOptions options, string policy, string budget, TaskBuilder? task = null,
        KvTally? kvs = null) =>
        Grid(engine, options.PasskeyLengths ?? [engine.Config.MaxSeqLen / 2], options.PasskeyDepths ?? [0.1, 0.5, 0.9], options.PasskeyTrials,
            promptLength => policy == "full" ? null
                : CompressionOptions.ForPolicy(policy, options.Budget(budget, promptLength)),
            task: task, kvs: kvs)
        .Average(cell => cell.Accuracy);

    /// <summary>The passkey task: a 5-digit key stated once at the depth.</summary>
    public static (List<int> Prompt, string Answer) PasskeyTask(ITextTokenizer tok, int length, double depth, Random rng)
    {
        string key = rng.Next(10000, 99999).ToString(CultureInfo.InvariantCulture);
        return (Build(tok, length, depth, key), key);
    }

    /// <summary>The multi-key needle task: four "The value of NAME is NNNN." facts (fewer when they would fill more than
    /// half the prompt), the one asked for at the depth and the others at random depths, then "What is the value of NAME? The value of NAME is".</summary>
    public static (List<int> Prompt, string Answer) MultiKeyNeedle(ITextTokenizer tok, int length, double depth, Random rng)
    {
        var facts = Enumerable.Range(0, 4).Select(i => (Name: new string(Enumerable.Range(0, 6).Select(_ => (char)('a' + rng.Next(26))).ToArray()),
            Value: rng.Next(1000, 10000).ToString(CultureInfo.InvariantCulture), Depth: i == 0 ? depth : rng.NextDouble())).ToList();
        var question = tok.Encode($" What is the value of {facts[0].Name}? The value of {facts[0].Name} is");
        var needles = facts.Select(f => (Tokens: tok.Encode($" The value of {f.Name} is {f.Value}. "), f.Depth)).ToList();
        // Short prompts (or verbose tokenizers) keep fewer distractors: the facts take at most half the prompt.
        while (needles.Count > 1 && needles.Sum(n => n.Tokens.Count) > length / 2) needles.RemoveAt(needles.Count - 1);
        int fillerTokens = Math.Max(0, length - needles.Sum(n => n.Tokens.Count) - question.Count - 1);
        var filler = tok.Encode(Filler);
        var body = Enumerable.Range(0, fillerTokens).Select(i => filler[i % filler.Count]).ToList();
        foreach (var (tokens, d) in needles.OrderByDescending(n => n.Depth)) body.InsertRange((int)(fillerTokens * d), tokens);
        var prompt = new List<int>();
        if (tok.BosId is int bos) prompt.Add(bos);
        prompt.AddRange(body);
        prompt.AddRange(question);
        return (prompt, facts[0].Value);
    }

    /// <summary>Accuracy for every (context length, depth) cell: trials prompts each, greedy answer must contain the key.
    /// compressionFor gives the compression for a prompt of that many tokens (null: full cache); kvs, when given, adds
    /// up the KVs every run held against a full cache.</summary>
    public static List<(int Length, double Depth, double Accuracy)> Grid(InferenceEngine engine, IReadOnlyList<int> lengths, IReadOnlyList<double> depths,
        int trials, Func<int, CompressionOptions?> compressionFor, IProgress<(int Done, int Total)>? progress = null, TaskBuilder? task = null,
        KvTally? kvs = null)
    {
        task ??= PasskeyTask;
        var tok = engine.Tokenizer ?? throw new InvalidOperationException("passkey retrieval needs a tokenizer");
        var rng = new Random(1234);
        var result = new List<(int, double, double)>();
        int done = 0;
        foreach (var length in lengths)
            foreach (var depth in depths)
            {
                // Submitted together: the scheduler batches them.
                var runs = Enumerable.Range(0, trials).Select(_ =>
                {
                    var (prompt, key) = task(tok, Math.Min(length, engine.Config.MaxSeqLen - 8), depth, rng);
                    return (Key: key, Handle: engine.Submit(prompt, new GenerationOptions(8, SamplingOptions.Greedy, Compression: compressionFor(prompt.Count))));
                }).ToList();
                int ok = 0;
                foreach (var (key, handle) in runs)
                {
                    var res = handle.Completion.GetAwaiter().GetResult();
                    if ((res.Text ?? tok.Decode(res.TokenIds)).Contains(key)) ok++;
                    kvs?.Add(engine.Config.Layers * engine.Config.KvHeads, res.PromptTokens + res.TokenIds.Count, res.EvictedKvs);
                }
                result.Add((length, depth, ok / (double)trials));
                progress?.Report((++done, lengths.Count * depths.Count));
            }
        return result;
    }

    public static List<int> Build(ITextTokenizer tok, int length, double depth, string key)
    {
        var filler = tok.Encode(Filler);
        var needle = tok.Encode($" The pass key is {key}. Remember it. {key} is the pass key. ");
        var question = tok.Encode(" What is the pass key? The pass key is");
        int fillerTokens = Math.Max(0, length - needle.Count - question.Count - 1);
        var body = Enumerable.Range(0, fillerTokens).Select(i => filler[i % filler.Count]).ToList();
        body.InsertRange((int)(fillerTokens * depth), needle);
        var prompt = new List<int>();
        if (tok.BosId is int bos) prompt.Add(bos);
        prompt.AddRange(body);
        prompt.AddRange(question);
        return prompt;
    }
}
