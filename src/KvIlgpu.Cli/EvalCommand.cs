using System.CommandLine;
using System.Text.Json;
using KvIlgpu.Compute;
using KvIlgpu.Engine;
using KvIlgpu.Evaluation;
using KvIlgpu.Models.Loading;
using KvIlgpu.Tokenization;
using Spectre.Console;

namespace KvIlgpu.Cli;

/// <summary>kvilgpu eval: every policy at every budget on the same corpus segments and passkey prompts.</summary>
internal static class EvalCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "model: HF folder, .gguf or llama2.c .bin", Required = true };
        var policies = new Option<string>("--policies") { Description = "comma-separated policies, each NAME or NAME:METRIC (metric: squared, plain, squared-average, plain-average)", DefaultValueFactory = _ => "kvcompress,snapkv,pyramidkv,h2o,streamingllm,adakv" };
        var budgets = new Option<string>("--budgets") { Description = "comma-separated budgets: 1/N of the sequence, or tokens per head", DefaultValueFactory = _ => "1/2,1/4,1/8,1/16,1/32" };
        var corpus = new Option<string>("--corpus") { Description = "held-out text: a text file, a .ids file of token ids, or the Brown corpus .tgz (its last 10 documents, which train holds out); not needed with --segments 0" };
        var segmentLength = new Option<int>("--segment-length") { Description = "tokens per evaluated segment (default: the model's context)" };
        var segments = new Option<int>("--segments") { Description = "corpus segments to evaluate (0: the retrieval tasks only, with --passkey-trials)", DefaultValueFactory = _ => 4 };
        var promptShare = new Option<double>("--prompt-share") { Description = "share of each segment given as the prompt (prefilled, then compressed to the budget); the rest is fed one token at a time, compressed every step and scored", DefaultValueFactory = _ => 0.25 };
        var passkey = new Option<int>("--passkey-trials") { Description = "passkey and multi-key needle trials per length and depth (0: none)", DefaultValueFactory = _ => 0 };
        var taskLengths = new Option<string?>("--task-lengths") { Description = "comma-separated prompt lengths of the retrieval tasks (default: half the context)" };
        var protectedWindow = new Option<string>("--protected-window") { Description = "most recent tokens never evicted, for every policy: a token count, or a share P/Q of each budget such as 1/2 or 3/4 (the default keeps a quarter, so the smallest budgets are not all window)", DefaultValueFactory = _ => "1/4" };
        var sinks = new Option<int>("--kv-sinks") { Description = "first tokens never evicted, for every policy (StreamingLLM keeps at least 4)", DefaultValueFactory = _ => 0 };
        var device = new Option<string>("--device") { Description = "auto, cpu, cuda or ilgpu-cpu", DefaultValueFactory = _ => "auto" };
        var json = new Option<bool>("--json") { Description = "print the rows as JSON" };
        var outDir = new Option<string?>("--out") { Description = "folder for results.md, results.csv and kl-vs-compression.svg" };
        var cmd = new Command("eval", "compare eviction policies: perplexity, KL to the full cache, top-1 agreement, passkey, KV bytes")
            { model, policies, budgets, corpus, segmentLength, segments, promptShare, passkey, taskLengths, protectedWindow, sinks, device, json, outDir };
        cmd.SetAction((r, ct) => CliErrors.Run(() =>
        {
            string modelPath = r.GetValue(model)!;
            string? corpusPath = r.GetValue(corpus);
            if (corpusPath == null && r.GetValue(segments) != 0) throw new ArgumentException("--corpus is required unless --segments 0 (retrieval tasks only)");
            if (corpusPath != null && !File.Exists(corpusPath)) throw new FileNotFoundException($"corpus not found: {corpusPath}", corpusPath);
            var weights = ProgressDisplay.Load(modelPath, p => ModelLoader.Load(modelPath, p));
            var c = weights.Config;
            var tokenizer = TokenizerLoader.ForModel(modelPath, c.VocabSize, c.BosTokenId, c.EosTokenIds.Count > 0 ? c.EosTokenIds[0] : null);
            if (r.GetValue(segments) == 0 && tokenizer == null)
                throw new ArgumentException($"--segments 0 runs only the retrieval tasks, which need a tokenizer, and {modelPath} has none");
            IReadOnlyList<int> tokens = corpusPath == null ? [] : corpusPath.EndsWith(".ids", StringComparison.OrdinalIgnoreCase)
                ? File.ReadAllText(corpusPath).Split([',', ' ', '\n', '\r', '\t'], StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray()
                : (tokenizer ?? throw new ArgumentException($"{modelPath} has no tokenizer: give --corpus as a .ids file of token ids")).Encode(CorpusText(corpusPath));
            var policyList = r.GetValue(policies)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            foreach (var p in policyList.Where(p => p != "full")) // checked up front, as the evaluation will build them
            {
                try { KvIlgpu.Compression.CompressionOptions.ForPolicy(p, new KvIlgpu.Compression.EvictionBudget(1)); }
                catch (ArgumentException e) { throw new ArgumentException($"--policies: {e.Message}"); }
            }
            var budgetList = r.GetValue(budgets)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            int seg = r.GetValue(segmentLength) is > 0 and var s ? s : c.MaxSeqLen;
            foreach (var b in budgetList) EvaluationOptions.BudgetTokens(b, seg); // validates
            var (protectedTokens, protectedShare) = EvaluationOptions.ParseProtectedWindow(r.GetValue(protectedWindow)!);
            var options = new EvaluationOptions(policyList, budgetList, Math.Min(seg, c.MaxSeqLen), r.GetValue(segments), PrefixFraction: r.GetValue(promptShare),
                ProtectedWindow: protectedTokens, ProtectedShare: protectedShare, Sinks: r.GetValue(sinks), PasskeyTrials: r.GetValue(passkey),
                PasskeyLengths: r.GetValue(taskLengths)?.Split(',').Select(v => int.TryParse(v.Trim(), out var n) && n > 8 ? n
                    : throw new ArgumentException($"--task-lengths: '{v}' is not a prompt length above 8")).ToList());
            var deviceKind = BackendFactory.Parse(r.GetValue(device)!);
            InferenceEngine NewEngine() => InferenceEngine.FromWeights(weights, new EngineOptions(deviceKind, MaxBatchSize: 2), tokenizer);

            List<EvaluationRow> rows = [];
            if (Console.IsErrorRedirected) // a log: a plain line per evaluated segment
                rows = Evaluator.Run(NewEngine, tokens, options,
                    new SyncProgress<(string Stage, int Done, int Total)>(p => Console.Error.WriteLine($"{p.Stage} {p.Done}/{p.Total}")));
            else
                ProgressDisplay.Err.Progress().AutoClear(true).Start(ctx =>
                {
                    var task = ctx.AddTask("evaluating");
                    rows = Evaluator.Run(NewEngine, tokens, options, new SyncProgress<(string Stage, int Done, int Total)>(p => { task.Description = p.Stage; task.MaxValue = p.Total; task.Value = p.Done; }));
                });
            if (r.GetValue(json)) Console.WriteLine(JsonSerializer.Serialize(rows));
            else Console.Write(Evaluator.Markdown(rows));
            if (r.GetValue(outDir) is { } dir)
            {
                Directory.CreateDirectory(dir);
                File.WriteAllText(Path.Combine(dir, "results.md"), Evaluator.Markdown(rows));
                File.WriteAllText(Path.Combine(dir, "results.csv"), Evaluator.Csv(rows));
                if (rows.Any(x => x.KlToFull != null)) Evaluator.Plot(Path.Combine(dir, "kl-vs-compression.svg"), rows);
                if (rows.Any(x => x.PasskeyAccuracy != null))
                {
                    Evaluator.Plot(Path.Combine(dir, "passkey-vs-compression.svg"), rows, "Passkey accuracy vs compression", "passkey accuracy", x => x.PasskeyAccuracy);
                    Evaluator.Plot(Path.Combine(dir, "needle-vs-compression.svg"), rows, "Multi-key needle accuracy vs compression", "needle accuracy", x => x.NeedleAccuracy);
                }
                Console.Error.WriteLine($"wrote {dir}/results.md, results.csv and plots");
            }
            return Task.FromResult(0);
        }));
        return cmd;
    }

    /// <summary>The text to evaluate on: a plain text file, or for the Brown corpus .tgz the documents that
    /// <c>train</c> holds out for validation (the last <see cref="KvIlgpu.Training.TrainingConfig.ValidationDocuments"/>
    /// by default, 10), so a model trained on the rest is evaluated on text it has not seen.</summary>
    private static string CorpusText(string path)
    {
        if (!path.EndsWith(".tgz", StringComparison.OrdinalIgnoreCase)) return File.ReadAllText(path);
        var docs = KvIlgpu.Training.BrownCorpus.Read(path);
        int heldOut = new KvIlgpu.Training.TrainingConfig().ValidationDocuments;
        return string.Join("\n\n", docs.Skip(docs.Count - heldOut).Select(d => d.Text));
    }
}
