using System.CommandLine;
using System.Text.Json;
using KvIlgpu.Compute;
using KvIlgpu.Engine;
using KvIlgpu.Evaluation;
using KvIlgpu.Models.Loading;
using KvIlgpu.Projection;
using KvIlgpu.Tokenization;
using Spectre.Console;

namespace KvIlgpu.Cli;

/// <summary>kvilgpu eval: every policy at every budget on the same corpus segments and passkey prompts.</summary>
internal static class EvalCommand
{
    /// <summary>The rows' JSON keys, as the CSV's columns spell them (kl_to_full, kv_bytes_fraction, ...).</summary>
    private static readonly JsonSerializerOptions SnakeCase = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "model: HF folder, .gguf or llama2.c .bin", Required = true };
        var policies = new Option<string>("--policies")
        {
            Description = "comma-separated policies, each NAME or NAME:METRIC (metric: squared, plain, squared-average, plain-average)",
            DefaultValueFactory = _ => "kvcompress,snapkv,pyramidkv,h2o,streamingllm,adakv",
        };
        var budgets = new Option<string>("--budgets")
        {
            Description = "comma-separated budgets: 1/N of the sequence, or tokens per head",
            DefaultValueFactory = _ => "1/2,1/4,1/8,1/16,1/32",
        };
        var corpus = new Option<string>("--corpus")
        {
            Description = "held-out text: a text file, a .ids file of token ids, or the Brown corpus .tgz (its last 10 documents, which " +
                "train holds out); not needed with --segments 0",
        };
        var segmentLength = new Option<int>("--segment-length")
        {
            Description = "tokens per evaluated segment (default: the model's context)",
        };
        var segments = new Option<int>("--segments")
        {
            Description = "corpus segments to evaluate (0: the retrieval tasks only, with --passkey-trials)",
            DefaultValueFactory = _ => 4,
        };
        var promptShare = new Option<double>("--prompt-share")
        {
            Description = "share of each segment given as the prompt (prefilled, then compressed to the budget); the rest is fed one " +
                "token at a time, compressed every step and scored",
            DefaultValueFactory = _ => 0.25,
        };
        var passkey = new Option<int>("--passkey-trials")
        {
            Description = "passkey and multi-key needle trials per length and depth (0: none)",
            DefaultValueFactory = _ => 0,
        };
        var taskLengths = new Option<string?>("--task-lengths")
        {
            Description = "comma-separated prompt lengths of the retrieval tasks (default: half the context)",
        };
        var protectedWindow = new Option<string>("--protected-window")
        {
            Description = "most recent tokens never evicted, for every policy: a token count, or a share P/Q of each budget such as 1/2 " +
                "or 3/4 (the default keeps a quarter, so the smallest budgets are not all window)",
            DefaultValueFactory = _ => "1/4",
        };
        var sinks = new Option<int>("--kv-sinks")
        {
            Description = "first tokens never evicted, for every policy (StreamingLLM keeps at least 4)",
            DefaultValueFactory = _ => 0,
        };
        var projections = new Option<string>("--projections")
        {
            Description = "the feature axis, comma-separated: none, think (ThinK's query-driven key channel pruning, at every " +
                "--dim-budgets share of key channels), NAME=FILE (a kv-projection file, at every --dim-budgets share), or " +
                "NAME=FILE:searched (at the file's own searched ranks)",
            DefaultValueFactory = _ => "none",
        };
        var dimBudgets = new Option<string>("--dim-budgets")
        {
            Description = "comma-separated kept fractions of feature dims for the projections, such as 1,3/4,1/2,3/8,1/4",
            DefaultValueFactory = _ => "1,3/4,1/2,3/8,1/4",
        };
        var storages = new Option<string>("--kv-dtypes")
        {
            Description = "the storage axis, comma-separated KV cache types to compare (f32, f16, bf16, q8), each against the f32 " +
                "full cache; default: auto (the model's weight type)",
            DefaultValueFactory = _ => "auto",
        };
        var device = new Option<string>("--device") { Description = "auto, cpu, cuda or ilgpu-cpu", DefaultValueFactory = _ => "auto" };
        var json = new Option<bool>("--json") { Description = "print the rows as JSON" };
        var outDir = new Option<string?>("--out") { Description = "folder for results.md, results.csv and the plots" };
        var cmd = new Command("eval", "compare eviction policies: perplexity, KL to the full cache, top-1 agreement, passkey, KV bytes")
            { model, policies, budgets, corpus, segmentLength, segments, promptShare, passkey, taskLengths, protectedWindow, sinks,
                projections, dimBudgets, storages, device, json, outDir };
        cmd.SetAction((r, ct) => CliErrors.Run(() =>
        {
            string modelPath = r.GetValue(model)!;
            string? corpusPath = r.GetValue(corpus);
            if (corpusPath == null && r.GetValue(segments) != 0) throw new ArgumentException("--corpus is required unless --segments 0 " +
                "(retrieval tasks only)");
            if (corpusPath != null && !File.Exists(corpusPath)) throw new FileNotFoundException($"corpus not found: {corpusPath}",
                corpusPath);
            var deviceKind = DeviceKinds.Parse(r.GetValue(device)!);
            var (protectedTokens, protectedShare) = EvaluationOptions.ParseProtectedWindow(r.GetValue(protectedWindow)!);
            static string[] List(string text) => text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            var lengths = r.GetValue(taskLengths) is { } tl ? CliValues.Ints(tl, "--task-lengths", 9) : null;
            if (r.GetValue(outDir) is { } resultsFolder) CliValues.WritableFolder(resultsFolder, "--out");
            var projectionItems = ProjectionItems(r.GetValue(projections)!);
            var dims = r.GetValue(dimBudgets)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(s => CliValues.Share(s, "--dim-budgets")).ToList();
            var storageTypes = List(r.GetValue(storages)!).Select(s => KvStorageCliOption.Parse(s, "--kv-dtypes")).ToList();
            // Checked before the model loads; the segment length is checked again against the model's context below.
            int requested = r.GetValue(segmentLength);
            var options = new EvaluationOptions(List(r.GetValue(policies)!), List(r.GetValue(budgets)!), requested > 0 ? requested
                : 1 << 20,
                r.GetValue(segments), PrefixFraction: r.GetValue(promptShare), ProtectedWindow: protectedTokens,
                    ProtectedShare: protectedShare,
                Sinks: r.GetValue(sinks), PasskeyTrials: r.GetValue(passkey), PasskeyLengths: lengths, DimBudgets: dims,
                Storages: storageTypes.SequenceEqual([KvIlgpu.Cache.KvStorageType.Auto]) ? null : storageTypes);
            options.Validate();
            var weights = ProgressDisplay.Load(modelPath, p => ModelLoader.Load(modelPath, p));
            var c = weights.Config;
            options = options with
            {
                SegmentLength = Math.Min(requested > 0 ? requested : c.MaxSeqLen, c.MaxSeqLen),
                Projections = [.. projectionItems.Select(p => p.Name == "think" ? ProjectionChoice.ThinKPruning
                    : p.File == null ? ProjectionChoice.None
                    : new ProjectionChoice(p.Name, KvProjectionFile.Load(p.File, c), p.Searched))],
            };
            options.Validate();
            var tokenizer = TokenizerLoader.ForModel(modelPath, c.VocabSize, c.BosTokenId, c.EosTokenIds.Count > 0 ? c.EosTokenIds[0]
                : null);
            if (options.Segments == 0 && tokenizer == null)
                throw new ArgumentException($"--segments 0 runs only the retrieval tasks, which need a tokenizer, and {modelPath} has " +
                    $"none");
            var tokens = corpusPath == null ? [] : EvaluationCorpus.Load(corpusPath, tokenizer);
            InferenceEngine NewEngine(KvProjection? p, KvIlgpu.Cache.KvStorageType storage) =>
                InferenceEngine.FromWeights(weights, new EngineOptions(deviceKind, MaxBatchSize: 2, KvProjection: p, KvStorage: storage),
                    tokenizer);

            List<EvaluationRow> rows = [];
            if (Console.IsErrorRedirected) // a log: a plain line per evaluated segment
                rows = Evaluator.Run(NewEngine, tokens, options,
                    new SyncProgress<(string Stage, int Done, int Total)>(p => Console.Error.WriteLine($"{p.Stage} {p.Done}/{p.Total}")));
            else
                ProgressDisplay.Err.Progress().AutoClear(true).Start(ctx =>
                {
                    var task = ctx.AddTask("evaluating");
                    rows = Evaluator.Run(NewEngine, tokens, options, new SyncProgress<(string Stage, int Done, int Total)>(p =>
                        { task.Description = p.Stage; task.MaxValue = p.Total; task.Value = p.Done; }));
                });
            if (r.GetValue(json)) Console.WriteLine(JsonSerializer.Serialize(rows, SnakeCase));
            else Console.Write(EvaluationReport.Markdown(rows));
            if (r.GetValue(outDir) is { } dir)
                Console.Error.WriteLine($"wrote {string.Join(", ", EvaluationReport.Write(dir, rows).Select(f => Path.Combine(dir, f)))}");
            return Task.FromResult(0);
        }));
        return cmd;
    }

    /// <summary>Parses --projections: none, NAME=FILE or NAME=FILE:searched, each file checked to exist.</summary>
    private static List<(string Name, string? File, bool Searched)> ProjectionItems(string text)
    {
        var items = new List<(string, string?, bool)>();
        foreach (var item in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (item == "none") { items.Add(("none", null, false)); continue; }
            if (item == "think") { items.Add(("think", null, false)); continue; }
            int eq = item.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0 || eq == item.Length - 1)
                throw new ArgumentException($"--projections: '{item}' is not none, NAME=FILE or NAME=FILE:searched");
            string name = item[..eq], file = item[(eq + 1)..];
            bool searched = file.EndsWith(":searched", StringComparison.Ordinal);
            if (searched) file = file[..^":searched".Length];
            if (name is "none" or "full" or "think" || name.Contains(' ', StringComparison.Ordinal))
                throw new ArgumentException($"--projections: '{name}' cannot name a projection (reserved or has a space)");
            items.Add((name, CliValues.ExistingFile(file, "--projections"), searched));
        }
        if (items.Count == 0) throw new ArgumentException("--projections is empty");
        return items;
    }
}
