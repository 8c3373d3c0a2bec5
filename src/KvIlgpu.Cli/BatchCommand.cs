using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using KvIlgpu.Compute;
using KvIlgpu.Engine;
using KvIlgpu.Models;

namespace KvIlgpu.Cli;

/// <summary>kvilgpu batch: many requests through continuous batching over the paged cache.</summary>
internal static class BatchCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "model: HF folder, .gguf or llama2.c .bin", Required = true };
        var requests = new Option<string>("--requests")
        {
            Description = "JSONL file, one request a line: {\"id\", \"prompt\" or \"prompt_ids\", \"max_tokens\", \"temperature\", " +
                "\"top_p\", \"top_k\", \"seed\"}",
            Required = true,
        };
        var kvMemory = new Option<long?>("--kv-memory") { Description = "KV cache budget in bytes (blocks plus metadata)" };
        var blockSize = new Option<int>("--block-size") { Description = "tokens per KV block", DefaultValueFactory = _ => 16 };
        var maxBatch = new Option<int>("--max-batch") { Description = "most sequences decoded together", DefaultValueFactory = _ => 32 };
        var maxStep = new Option<int>("--max-tokens-per-step")
        {
            Description = "most tokens in one forward step",
            DefaultValueFactory = _ => 256,
        };
        var device = new Option<string>("--device") { Description = "auto, cpu, cuda or ilgpu-cpu", DefaultValueFactory = _ => "auto" };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "tokenizer file when it is not beside the model" };
        var json = new Option<bool>("--json") { Description = "JSON lines only (no progress)" };
        var cmd = new Command("batch", "run many requests together with continuous batching") { model, requests, kvMemory, blockSize,
            maxBatch, maxStep, device, tokenizer, json };
        var compression = new CompressionCliOptions();
        compression.AddTo(cmd);
        var projection = new ProjectionCliOptions();
        projection.AddTo(cmd);
        var storage = new KvStorageCliOption();
        storage.AddTo(cmd);
        cmd.SetAction((r, ct) => CliErrors.Run(async () =>
        {
            var deviceKind = DeviceKinds.Parse(r.GetValue(device)!);
            string modelPath = r.GetValue(model)!, requestsPath = r.GetValue(requests)!;
            if (!File.Exists(requestsPath)) throw new FileNotFoundException($"requests file not found: {requestsPath}", requestsPath);
            var options = new EngineOptions(deviceKind, KvMemoryBytes: r.GetValue(kvMemory), BlockSize: r.GetValue(blockSize),
                MaxBatchSize: r.GetValue(maxBatch), MaxTokensPerStep: r.GetValue(maxStep), KvProjection: projection.Build(r),
                KvStorage: storage.Build(r));
            using var engine = ProgressDisplay.Load(modelPath, p => InferenceEngine.Load(modelPath, options, p, r.GetValue(tokenizer)));
            var output = new object();
            void Print(object line) { lock (output) Console.WriteLine(JsonSerializer.Serialize(line)); }
            int failed = 0, finished = 0;
            void Fail(string id, int lineNumber, string error)
            {
                Interlocked.Increment(ref failed);
                Print(new { id, line = lineNumber, error });
            }
            var clock = Stopwatch.StartNew();
            // A bad line, or a request the engine refuses (a prompt longer than the context, ids outside the vocabulary),
            // gets its own error line; every other request runs.
            var running = new List<(GenerationHandle Handle, int Line)>();
            var thinK = projection.BuildThinK(r);
            foreach (var (request, error) in ReadRequests(requestsPath, engine, line => compression.Build(r, line), thinK))
            {
                if (error != null) { Fail(error.Id, error.Line, error.Message); continue; }
                try { running.Add((engine.Submit(request!.Prompt, request.Options, request.Id, ct), request.Line)); }
                catch (Exception e) when (e is ArgumentException or ContextOverflowException or InvalidOperationException)
                {
                    Fail(request!.Id, request.Line,
                        $"{requestsPath}:{request.Line}: {OptionNames.ForUser(CliErrors.Describe(e), batchLine: true)}");
                }
            }
            await Task.WhenAll(running.Select(async run =>
            {
                try
                {
                    var res = await run.Handle.Completion;
                    var line = new Dictionary<string, object?>
                    {
                        ["id"] = res.Id, ["token_ids"] = res.TokenIds, ["stop_reason"] = res.StopReason, ["preemptions"] = res.Preemptions,
                        ["prompt_tokens"] = res.PromptTokens, ["time_to_first_token_s"] = Math.Round(res.TimeToFirstToken.TotalSeconds, 4),
                        ["evicted_kvs"] = res.EvictedKvs, ["peak_kv_bytes"] = res.KvUsage.PeakBytes,
                        ["mean_kv_bytes"] = Math.Round(res.KvUsage.MeanBytes, 6), ["peak_kv_blocks"] = res.KvUsage.PeakBlocks,
                    };
                    if (res.Text != null) line["text"] = res.Text;
                    Interlocked.Increment(ref finished);
                    Print(line);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    Fail(run.Handle.Id, run.Line, $"{requestsPath}:{run.Line}: {CliErrors.Describe(e)}");
                }
            }));
            var stats = engine.Stats;
            double seconds = clock.Elapsed.TotalSeconds;
            Console.WriteLine(JsonSerializer.Serialize(new
            {
                summary = new
                {
                    requests = finished + failed, finished, failed, generated_tokens = stats.GeneratedTokens,
                    elapsed_s = Math.Round(seconds, 3),
                    throughput_tokens_per_s = Math.Round(stats.GeneratedTokens / seconds, 2), max_batch_size = stats.MaxBatchReached,
                    preemptions = stats.Preemptions, evicted_kvs = stats.EvictedKvs, steps = stats.Steps,
                    peak_kv_bytes = stats.PeakKvBytes, kv_bytes_total = stats.KvBytesTotal,
                    blocks_total = stats.BlocksTotal, block_size = r.GetValue(blockSize), device = engine.DeviceName,
                    kv_dtype = KvStorageCliOption.Name(engine.KvStorage), kv_bytes_per_token_per_head = engine.KvBytesPerToken,
                },
            }));
            // 0: every request finished; 2: some failed (each has its error line) and others finished; 1: none finished.
            return failed == 0 ? 0 : finished > 0 ? 2 : 1;
        }));
        return cmd;
    }

    private sealed record ParsedRequest(string Id, int Line, IReadOnlyList<int> Prompt, GenerationOptions Options);

    private sealed record LineError(string Id, int Line, string Message);

    /// <summary>Every non-blank line of the file, as a request or as the error that stops it.</summary>
    private static IEnumerable<(ParsedRequest? Request, LineError? Error)> ReadRequests(string path, InferenceEngine engine,
        Func<BatchLine, KvIlgpu.Compression.CompressionOptions?> compression, Projection.ThinKOptions? thinK)
    {
        int lineNo = 0;
        foreach (var raw in File.ReadLines(path))
        {
            lineNo++;
            if (string.IsNullOrWhiteSpace(raw)) continue;
            string id = $"line-{lineNo}";
            ParsedRequest? request = null;
            string? error = null;
            try
            {
                var line = BatchLine.Parse($"{path}:{lineNo}", lineNo, raw);
                id = line.Id;
                request = Read(line, engine, compression, thinK);
            }
            catch (BatchLineException e) { error = e.Message; }
            yield return (request, error == null ? null : new LineError(id, lineNo, error));
        }
    }

    private static ParsedRequest Read(BatchLine line, InferenceEngine engine, Func<BatchLine,
        KvIlgpu.Compression.CompressionOptions?> compression, Projection.ThinKOptions? thinK)
    {
        if (line.Has("prompt") == line.Has("prompt_ids")) throw line.Error(null, "give exactly one of \"prompt\" or \"prompt_ids\"");
        IReadOnlyList<int> prompt;
        if (line.TryInts("prompt_ids") is { } ids) prompt = ids;
        else if (engine.Tokenizer == null) throw line.Error("prompt", "the model has no tokenizer: give prompt_ids instead");
        else prompt = engine.Encode(line.TryString("prompt") ?? "");
        var sampling = new SamplingOptions((float)(line.TryNumber("temperature") ?? 0), line.Int("top_k", 0),
            (float)(line.TryNumber("top_p") ?? 1), line.Int("seed", 0));
        try
        {
            sampling.Validate();
            // A line's "think" (a share of key channels, or 1 for none) replaces the command line's --think.
            var lineThinK = line.TryNumber("think") is double share ? share == 1 ? null : new Projection.ThinKOptions(share) : thinK;
            lineThinK?.Validate();
            return new ParsedRequest(line.Id, line.Number, prompt, new GenerationOptions(line.Int("max_tokens", 128), sampling,
                Compression: compression(line), ThinK: lineThinK));
        }
        catch (InvalidOptionException e) { throw line.Error(null, OptionNames.ForUser(e.Message, batchLine: true)); }
        catch (ArgumentException e) { throw line.Error(null, e.Message); }
    }
}
