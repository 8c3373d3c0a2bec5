using System.Globalization;
using System.Text;
using KvIlgpu.Compression;
using KvIlgpu.Engine;
using KvIlgpu.Tokenization;

namespace KvIlgpu.Evaluation;

/// <summary>What to evaluate. Budgets are "1/N" (a fraction of each sequence's length, per KV head) or a token count.</summary>
public sealed record EvaluationOptions(
    IReadOnlyList<string> Policies,
    IReadOnlyList<string> Budgets,
    int SegmentLength = 512,
    int Segments = 4,
    double PrefixFraction = 0.25,
    int ProtectedWindow = 32,
    int PasskeyTrials = 0,
    IReadOnlyList<int>? PasskeyLengths = null,
    IReadOnlyList<double>? PasskeyDepths = null)
{
    /// <summary>Per-head token budget for a sequence of the given length.</summary>
    public static int BudgetTokens(string budget, int length)
    {
        if (budget.StartsWith("1/") && double.TryParse(budget[2..], NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && d >= 1)
            return Math.Max(1, (int)(length / d));
        if (int.TryParse(budget, out var n) && n > 0) return n;
        throw new ArgumentException($"--budgets: '{budget}' is neither 1/N nor a positive token count");
    }
}

/// <summary>One (policy, budget) result. Perplexity, KL(full || compressed) and top-1 agreement come from teacher-forced
/// corpus segments whose cache is compressed as the context grows; passkey accuracy from greedy retrieval.</summary>
public sealed record EvaluationRow(string Policy, string Budget, double CompressionRatio, double Perplexity, double KlToFull,
    double Top1Agreement, double? PasskeyAccuracy, long PeakKvBytes);

/// <summary>Runs every policy at every budget on the same inputs, through the same engine path as serving
/// (teacher forcing and a logits tap on the scheduler).</summary>
public static class Evaluator
{
    public static List<EvaluationRow> Run(Func<InferenceEngine> newEngine, IReadOnlyList<int> corpus, EvaluationOptions options,
        IProgress<(string Stage, int Done, int Total)>? progress = null)
    {
        var segments = Enumerable.Range(0, Math.Min(options.Segments, corpus.Count / options.SegmentLength))
            .Select(i => corpus.Skip(i * options.SegmentLength).Take(options.SegmentLength).ToArray()).ToList();
        if (segments.Count == 0) throw new ArgumentException($"the corpus has {corpus.Count} tokens, fewer than one segment of {options.SegmentLength}");
        int prefix = Math.Max(1, (int)(options.SegmentLength * options.PrefixFraction));
        var configs = new List<(string Policy, string Budget)> { ("full", "-") };
        foreach (var p in options.Policies.Where(p => p != "full")) foreach (var b in options.Budgets) configs.Add((p, b));
        int total = configs.Count * segments.Count, done = 0;

        // Reference log-probabilities of the full cache, per segment and position.
        var reference = new List<float[][]>();
        var rows = new List<EvaluationRow>();
        foreach (var (policy, budget) in configs)
        {
            using var engine = newEngine();
            double nll = 0, kl = 0, agree = 0;
            long count = 0, held = 0, full = 0;
            for (int si = 0; si < segments.Count; si++)
            {
                var seg = segments[si];
                var logProbs = new float[seg.Length - prefix][];
                var compression = policy == "full" ? null
                    : new CompressionOptions(new EvictionBudget(EvaluationOptions.BudgetTokens(budget, seg.Length), ProtectedWindow: options.ProtectedWindow), policy);
                var gen = new GenerationOptions(seg.Length - prefix, SamplingOptions.Greedy, StopAtEos: false, compression,
                    ForcedTokens: seg[prefix..], OnLogits: (pos, logits) => logProbs[pos - prefix] = LogSoftmax(logits));
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
                long heads = engine.Config.Layers * engine.Config.KvHeads;
                full += heads * seg.Length;
                held += heads * seg.Length - result.EvictedKvs;
                progress?.Report(("evaluating", ++done, total));
            }
            long peak = engine.Stats.PeakKvBytes; // of the corpus runs, before passkey prompts
            double? passkey = options.PasskeyTrials > 0 && engine.Tokenizer != null ? Passkey.Accuracy(engine, options, policy, budget) : null;
            rows.Add(new EvaluationRow(policy, budget, full / (double)Math.Max(1, held), Math.Exp(nll / count), kl / count, agree / count,
                passkey, peak));
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

    public static string Markdown(IReadOnlyList<EvaluationRow> rows)
    {
        var sb = new StringBuilder();
        sb.AppendLine("| policy | budget | compression | perplexity | KL to full | top-1 agreement | passkey | peak KV bytes |");
        sb.AppendLine("|---|---|---|---|---|---|---|---|");
        foreach (var r in rows)
            sb.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"| {r.Policy} | {r.Budget} | {r.CompressionRatio:F2}x | {r.Perplexity:F3} | {r.KlToFull:F4} | {r.Top1Agreement:P1} | {(r.PasskeyAccuracy is double p ? p.ToString("P0", CultureInfo.InvariantCulture) : "-")} | {r.PeakKvBytes:N0} |"));
        return sb.ToString();
    }

    public static string Csv(IReadOnlyList<EvaluationRow> rows)
    {
        var sb = new StringBuilder("policy,budget,compression_ratio,perplexity,kl_to_full,top1_agreement,passkey_accuracy,peak_kv_bytes\n");
        foreach (var r in rows)
            sb.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"{r.Policy},{r.Budget},{r.CompressionRatio:R},{r.Perplexity:R},{r.KlToFull:R},{r.Top1Agreement:R},{r.PasskeyAccuracy?.ToString("R", CultureInfo.InvariantCulture) ?? ""},{r.PeakKvBytes}"));
        return sb.ToString();
    }

    /// <summary>KL to the full cache against compression ratio, one line per policy.</summary>
    public static void Plot(string path, IReadOnlyList<EvaluationRow> rows) =>
        SvgPlot.Write(path, "KL to the full cache vs compression", "compression ratio (full KVs / kept KVs)", "mean KL(full || compressed)",
            rows.Where(r => r.Policy != "full").GroupBy(r => r.Policy)
                .ToDictionary(g => g.Key, g => (IReadOnlyList<(double X, double Y)>)g.Select(r => (r.CompressionRatio, r.KlToFull)).ToList()));
}

/// <summary>Passkey retrieval: a number stated once at a chosen depth of filler text, asked for at the end; greedy
/// decoding must reproduce it.</summary>
public static class Passkey
{
    private const string Filler = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. ";

    /// <summary>Mean accuracy over the options' lengths and depths for one policy and budget.</summary>
    public static double Accuracy(InferenceEngine engine, EvaluationOptions options, string policy, string budget) =>
        Grid(engine, options.PasskeyLengths ?? [engine.Config.MaxSeqLen / 2], options.PasskeyDepths ?? [0.1, 0.5, 0.9], options.PasskeyTrials,
            promptLength => policy == "full" ? null
                : new CompressionOptions(new EvictionBudget(EvaluationOptions.BudgetTokens(budget, promptLength), ProtectedWindow: options.ProtectedWindow), policy))
        .Average(cell => cell.Accuracy);

    /// <summary>Accuracy for every (context length, depth) cell: trials prompts each, greedy answer must contain the key.
    /// compressionFor gives the compression for a prompt of that many tokens (null: full cache).</summary>
    public static List<(int Length, double Depth, double Accuracy)> Grid(InferenceEngine engine, IReadOnlyList<int> lengths, IReadOnlyList<double> depths,
        int trials, Func<int, CompressionOptions?> compressionFor, IProgress<(int Done, int Total)>? progress = null)
    {
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
                    string key = rng.Next(10000, 99999).ToString(CultureInfo.InvariantCulture);
                    var prompt = Build(tok, Math.Min(length, engine.Config.MaxSeqLen - 8), depth, key);
                    return (key, engine.Submit(prompt, new GenerationOptions(8, SamplingOptions.Greedy, Compression: compressionFor(prompt.Count))));
                }).ToList();
                int ok = runs.Count(r => r.Item2.Completion.GetAwaiter().GetResult() is var res && (res.Text ?? tok.Decode(res.TokenIds)).Contains(r.key));
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
