using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using KvIlgpu.Compute;
using KvIlgpu.Engine;

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
        cmd.SetAction((r, ct) => CliErrors.Run(async () =>
        {
            var deviceKind = DeviceKinds.Parse(r.GetValue(device)!);
            string modelPath = r.GetValue(model)!, requestsPath = r.GetValue(requests)!;
            if (!File.Exists(requestsPath)) throw new FileNotFoundException($"requests file not found: {requestsPath}", requestsPath);
            var options = new EngineOptions(deviceKind, KvMemoryBytes: r.GetValue(kvMemory), BlockSize: r.GetValue(blockSize),
                MaxBatchSize: r.GetValue(maxBatch), MaxTokensPerStep: r.GetValue(maxStep));
            using var engine = ProgressDisplay.Load(modelPath, p => InferenceEngine.Load(modelPath, options, p, r.GetValue(tokenizer)));
            var parsed = ReadRequests(requestsPath, engine, line => compression.Build(r, line));
            var clock = Stopwatch.StartNew();
            var handles = parsed.Select(q => engine.Submit(q.Prompt, q.Options, q.Id, ct)).ToList();
            var output = new object();
            int failed = 0;
            await Task.WhenAll(handles.Select(async h =>
            {
                try
                {
                    var res = await h.Completion;
                    var line = new Dictionary<string, object?>
                    {
                        ["id"] = res.Id, ["token_ids"] = res.TokenIds, ["stop_reason"] = res.StopReason, ["preemptions"] = res.Preemptions,
                        ["prompt_tokens"] = res.PromptTokens, ["time_to_first_token_s"] = Math.Round(res.TimeToFirstToken.TotalSeconds, 4),
                        ["evicted_kvs"] = res.EvictedKvs, ["peak_kv_bytes"] = res.KvUsage.PeakBytes,
                        ["mean_kv_bytes"] = Math.Round(res.KvUsage.MeanBytes, 6),
                    };
                    if (res.Text != null) line["text"] = res.Text;
                    lock (output) Console.WriteLine(JsonSerializer.Serialize(line));
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    Interlocked.Increment(ref failed);
                    lock (output) Console.WriteLine(JsonSerializer.Serialize(new { id = h.Id, error = e.Message }));
                }
            }));
            var stats = engine.Stats;
            double seconds = clock.Elapsed.TotalSeconds;
            Console.WriteLine(JsonSerializer.Serialize(new
            {
                summary = new
                {
                    requests = handles.Count, failed, generated_tokens = stats.GeneratedTokens, elapsed_s = Math.Round(seconds, 3),
                    throughput_tokens_per_s = Math.Round(stats.GeneratedTokens / seconds, 2), max_batch_size = stats.MaxBatchReached,
                    preemptions = stats.Preemptions, evicted_kvs = stats.EvictedKvs, steps = stats.Steps,
                    peak_kv_bytes = stats.PeakKvBytes, kv_bytes_total = stats.KvBytesTotal,
                    blocks_total = stats.BlocksTotal, block_size = r.GetValue(blockSize), device = engine.DeviceName,
                },
            }));
            return failed == 0 ? 0 : 1;
        }));
        return cmd;
    }

    private sealed record ParsedRequest(string Id, IReadOnlyList<int> Prompt, GenerationOptions Options);

    private static List<ParsedRequest> ReadRequests(string path, InferenceEngine engine, Func<JsonElement,
        KvIlgpu.Compression.CompressionOptions?> compression)
    {
        var list = new List<ParsedRequest>();
        int lineNo = 0;
        foreach (var raw in File.ReadLines(path))
        {
            lineNo++;
            if (string.IsNullOrWhiteSpace(raw)) continue;
            string where = $"{path}:{lineNo}";
            JsonElement e;
            try { e = JsonDocument.Parse(raw).RootElement; }
            catch (JsonException ex) { throw new InvalidDataException($"{where}: not valid JSON ({ex.Message})"); }
            string id = e.TryGetProperty("id", out var idEl) ? (idEl.ValueKind == JsonValueKind.String ? idEl.GetString()!
                : idEl.GetRawText()) : $"line-{lineNo}";
            IReadOnlyList<int> prompt;
            if (e.TryGetProperty("prompt_ids", out var ids)) prompt = ids.EnumerateArray().Select(x => x.GetInt32()).ToArray();
            else if (e.TryGetProperty("prompt", out var text)) prompt = engine.Encode(text.GetString() ?? "");
            else throw new InvalidDataException($"{where}: needs \"prompt\" or \"prompt_ids\"");
            float F(string k, float d) => e.TryGetProperty(k, out var v) ? v.GetSingle() : d;
            int I(string k, int d) => e.TryGetProperty(k, out var v) ? v.GetInt32() : d;
            var sampling = new SamplingOptions(F("temperature", 0f), I("top_k", 0), F("top_p", 1f), I("seed", 0));
            try { sampling.Validate(); }
            catch (InvalidOptionException ex)
            {
                throw new InvalidDataException($"{where}: {OptionNames.ForUser(ex.Message, batchLine: true)}");
            }
            KvIlgpu.Compression.CompressionOptions? c;
            try { c = compression(e); }
            catch (InvalidOptionException ex)
            {
                throw new InvalidDataException($"{where}: {OptionNames.ForUser(ex.Message, batchLine: true)}");
            }
            catch (ArgumentException ex) { throw new InvalidDataException($"{where}: {ex.Message}"); }
            list.Add(new ParsedRequest(id, prompt, new GenerationOptions(I("max_tokens", 128), sampling, Compression: c)));
        }
        return list;
    }
}
