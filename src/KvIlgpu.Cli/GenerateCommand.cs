using System.CommandLine;
using System.Text.Json;
using KvIlgpu.Compute;
using KvIlgpu.Engine;

namespace KvIlgpu.Cli;

internal static class GenerateCommand
{
    public static Command Create()
    {
        var model = new Option<string?>("--model")
        {
            Description = "model: HF folder, .gguf or llama2.c .bin (default: the shipped default model)",
        };
        var prompt = new Option<string?>("--prompt") { Description = "prompt text (needs a tokenizer)" };
        var promptIds = new Option<string?>("--prompt-ids") { Description = "prompt as comma-separated token ids, e.g. 1,5,9" };
        var maxTokens = new Option<int>("--max-tokens") { Description = "most tokens to generate", DefaultValueFactory = _ => 256 };
        var temperature = new Option<float>("--temperature") { Description = "0 = greedy", DefaultValueFactory = _ => 0.8f };
        var topP = new Option<float>("--top-p") { Description = "nucleus sampling threshold", DefaultValueFactory = _ => 0.95f };
        var topK = new Option<int>("--top-k") { Description = "keep the K most likely tokens (0 = all)", DefaultValueFactory = _ => 40 };
        var seed = new Option<int>("--seed") { Description = "random seed", DefaultValueFactory = _ => 0 };
        var device = new Option<string>("--device") { Description = "auto, cpu, cuda or ilgpu-cpu", DefaultValueFactory = _ => "auto" };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "tokenizer file when it is not beside the model" };
        var json = new Option<bool>("--json") { Description = "print one JSON object instead of streaming text" };
        var cmd = new Command("generate", "generate text from a prompt") { model, prompt, promptIds, maxTokens, temperature, topP, topK,
            seed, device, tokenizer, json };
        var compression = new CompressionCliOptions();
        compression.AddTo(cmd);
        var projection = new ProjectionCliOptions();
        projection.AddTo(cmd);
        var storage = new KvStorageCliOption();
        storage.AddTo(cmd);
        cmd.SetAction((r, ct) => CliErrors.Run(async () =>
        {
            string? text = r.GetValue(prompt), ids = r.GetValue(promptIds);
            if ((text == null) == (ids == null)) throw new ArgumentException("give exactly one of --prompt or --prompt-ids");
            var sampling = new SamplingOptions(r.GetValue(temperature), r.GetValue(topK), r.GetValue(topP), r.GetValue(seed));
            sampling.Validate();
            var deviceKind = DeviceKinds.Parse(r.GetValue(device)!);
            bool asJson = r.GetValue(json);
            string modelPath = r.GetValue(model) ?? DefaultModel.Path;
            if (r.GetValue(model) == null && !Directory.Exists(modelPath))
                throw new FileNotFoundException($"no --model given and the default model is missing at {modelPath}");
            var compressionOptions = compression.Build(r); // checked before the model loads
            var kvProjection = projection.Build(r);
            var thinK = projection.BuildThinK(r);
            var kvStorage = storage.Build(r);
            using var engine = ProgressDisplay.Load(modelPath, p => InferenceEngine.Load(modelPath,
                new EngineOptions(deviceKind, KvProjection: kvProjection, KvStorage: kvStorage), p, r.GetValue(tokenizer)));
            var promptTokens = ids != null ? CliValues.Ints(ids, "--prompt-ids", 0) : engine.Encode(text!);
            var options = new GenerationOptions(r.GetValue(maxTokens), sampling, Compression: compressionOptions, ThinK: thinK);
            var generated = new List<int>();
            if (!asJson && text != null) Console.Write(text);
            var handle = engine.Submit(promptTokens, options, cancellationToken: ct);
            await foreach (var t in handle.Tokens.WithCancellation(ct))
            {
                generated.Add(t.Id);
                if (!asJson) Console.Write(engine.Tokenizer != null ? t.Text : (generated.Count > 1 ? "," : "") + t.Id);
            }
            var stats = await handle.Completion;
            if (asJson)
            {
                var result = new Dictionary<string, object?>
                {
                    ["token_ids"] = generated,
                    ["prompt_tokens"] = promptTokens.Count,
                    ["prefill_tokens_per_s"] = Math.Round(stats.PrefillTokensPerSecond, 2),
                    ["decode_tokens_per_s"] = Math.Round(stats.DecodeTokensPerSecond, 2),
                    ["stop_reason"] = stats.StopReason,
                    ["device"] = engine.DeviceName,
                    ["evicted_kvs"] = stats.EvictedKvs,
                    ["kv_dtype"] = KvStorageCliOption.Name(engine.KvStorage),
                    ["kv_bytes_per_token_per_head"] = engine.KvBytesPerToken,
                    ["kv_bytes_held_mean"] = Math.Round(stats.KvUsage.MeanBytes),
                    ["kv_bytes_held_peak"] = stats.KvUsage.PeakBytes,
                    ["kv_blocks_peak"] = stats.KvUsage.PeakBlocks,
                    ["peak_kv_bytes"] = engine.Stats.PeakKvBytes,
                };
                if (engine.Tokenizer != null) result["text"] = engine.Tokenizer.Decode(generated);
                Console.WriteLine(JsonSerializer.Serialize(result));
            }
            else
            {
                Console.WriteLine();
                Console.Error.WriteLine($"[{stats.TokenIds.Count} tokens, stop: {stats.StopReason}] prefill " +
                    $"{stats.PrefillTokensPerSecond:F1} tok/s, decode {stats.DecodeTokensPerSecond:F1} tok/s on {engine.DeviceName}");
            }
            return 0;
        }));
        return cmd;
    }
}
