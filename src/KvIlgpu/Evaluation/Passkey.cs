using KvIlgpu.Compression;
using KvIlgpu.Engine;
using KvIlgpu.Tasks;
using KvIlgpu.Tokenization;

namespace KvIlgpu.Evaluation;

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
        KvTally? kvs = null, Projection.ThinKOptions? thinK = null) =>
        Grid(engine, options.PasskeyLengths ?? [engine.Config.MaxSeqLen / 2], options.PasskeyDepths ?? [0.1, 0.5, 0.9],
            options.PasskeyTrials,
            promptLength => policy == "full" ? null
                : CompressionOptions.ForPolicy(policy, options.Budget(budget, promptLength)),
            task: task, kvs: kvs, thinK: thinK)
        .Average(cell => cell.Accuracy);

    /// <summary>The passkey task: a 5-digit key stated once at the depth.</summary>
    public static (List<int> Prompt, string Answer) PasskeyTask(ITextTokenizer tok, int length, double depth, Random rng)
    {
        string key = RetrievalTemplates.DrawPasskey(rng);
        return (Build(tok, length, depth, key), key);
    }

    /// <summary>The multi-key needle task: four "The value of NAME is NNNN." facts (fewer when they would fill more than
    /// half the prompt), the one asked for at the depth and the others at random depths, then "What is the value of
    /// NAME? The value of NAME is".</summary>
    public static (List<int> Prompt, string Answer) MultiKeyNeedle(ITextTokenizer tok, int length, double depth, Random rng)
    {
        var facts = Enumerable.Range(0, 4).Select(i => (Name: RetrievalTemplates.DrawNeedleName(rng),
            Value: RetrievalTemplates.DrawNeedleValue(rng), Depth: i == 0 ? depth : rng.NextDouble())).ToList();
        var question = tok.Encode(RetrievalTemplates.NeedleQuestion(facts[0].Name));
        var needles = facts.Select(f => (Tokens: tok.Encode(RetrievalTemplates.NeedleFact(f.Name, f.Value)), f.Depth)).ToList();
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
    public static List<(int Length, double Depth, double Accuracy)> Grid(InferenceEngine engine, IReadOnlyList<int> lengths,
        IReadOnlyList<double> depths,
        int trials, Func<int, CompressionOptions?> compressionFor, IProgress<(int Done, int Total)>? progress = null,
            TaskBuilder? task = null,
        KvTally? kvs = null, Projection.ThinKOptions? thinK = null)
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
                    return (Key: key, Handle: engine.Submit(prompt, new GenerationOptions(8, SamplingOptions.Greedy,
                        Compression: compressionFor(prompt.Count), ThinK: thinK)));
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

    /// <summary>A passkey prompt of about length tokens: filler, the key's sentence at relative depth, then the question.</summary>
    public static List<int> Build(ITextTokenizer tok, int length, double depth, string key)
    {
        var filler = tok.Encode(Filler);
        var needle = tok.Encode(RetrievalTemplates.PasskeyNeedle(key));
        var question = tok.Encode(RetrievalTemplates.PasskeyQuestion);
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
