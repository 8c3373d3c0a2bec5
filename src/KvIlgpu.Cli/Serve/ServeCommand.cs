using System.CommandLine;
using KvIlgpu.Chat;
using KvIlgpu.Compute;
using KvIlgpu.Engine;

namespace KvIlgpu.Cli.Serve;

/// <summary>kvilgpu serve: the OpenAI-compatible HTTP server over one engine (see <see cref="OpenAiServer"/>).</summary>
internal static class ServeCommand
{
    public static Command Create()
    {
        var model = new Option<string?>("--model")
        {
            Description = "model: HF folder, .gguf or llama2.c .bin (default: the shipped model)",
        };
        var host = new Option<string>("--host") { Description = "address to listen on", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "port to listen on (0: any free port)", DefaultValueFactory = _ => 8080 };
        var kvMemory = new Option<long?>("--kv-memory") { Description = "KV cache budget in bytes (blocks plus metadata)" };
        var maxBatch = new Option<int>("--max-batch") { Description = "most sequences decoded together", DefaultValueFactory = _ => 32 };
        var maxWaiting = new Option<int>("--max-waiting")
        {
            Description = "requests that may wait for a batch slot; more get 429 with Retry-After",
            DefaultValueFactory = _ => 64,
        };
        var maxBody = new Option<long>("--max-body-bytes")
        {
            Description = "largest request body (413 past it)",
            DefaultValueFactory = _ => 4 << 20,
        };
        var apiKey = new Option<string?>("--api-key") { Description = "require Authorization: Bearer KEY on /v1 requests" };
        var device = new Option<string>("--device") { Description = "auto, cpu, cuda or ilgpu-cpu", DefaultValueFactory = _ => "auto" };
        var cmd = new Command("serve", "an OpenAI-compatible HTTP server: /v1/completions, /v1/chat/completions, /v1/models, /health")
            { model, host, port, kvMemory, maxBatch, maxWaiting, maxBody, apiKey, device };
        var compression = new CompressionCliOptions();
        compression.AddTo(cmd);
        var storage = new KvStorageCliOption();
        storage.AddTo(cmd);
        // A MatryoshkaKV projection for every request (ThinK's per-request --think is not a serve option).
        var projection = new ProjectionCliOptions();
        cmd.Options.Add(projection.File);
        cmd.Options.Add(projection.Ranks);
        cmd.SetAction((r, ct) => CliErrors.Run(async () =>
        {
            string modelPath = r.GetValue(model) ?? DefaultModel.Path;
            CliValues.Positive(r.GetValue(maxBatch), "--max-batch");
            CliValues.Positive(r.GetValue(maxWaiting), "--max-waiting");
            if (r.GetValue(maxBody) < 1) throw new ArgumentException($"--max-body-bytes must be >= 1 (got {r.GetValue(maxBody)})");
            if (r.GetValue(port) is < 0 or > 65535) throw new ArgumentException($"--port must be 0..65535 (got {r.GetValue(port)})");
            compression.Build(r); // the defaults checked before the model loads
            var options = new EngineOptions(DeviceKinds.Parse(r.GetValue(device)!), KvMemoryBytes: r.GetValue(kvMemory),
                MaxBatchSize: r.GetValue(maxBatch), KvStorage: storage.Build(r), KvProjection: projection.Build(r));
            using var engine = ProgressDisplay.Load(modelPath, p => InferenceEngine.Load(modelPath, options, p));
            var serve = new ServeOptions(Path.GetFileNameWithoutExtension(Path.TrimEndingDirectorySeparator(modelPath)), r.GetValue(apiKey),
                r.GetValue(maxWaiting), r.GetValue(maxBody), line => compression.Build(r, line), ChatTemplate.ForModel(modelPath));
            await using var app = OpenAiServer.Build(engine, serve, $"http://{r.GetValue(host)}:{r.GetValue(port)}");
            await app.StartAsync(ct);
            Console.Error.WriteLine($"serving {serve.ModelName} on {string.Join(", ", app.Urls)} ({engine.DeviceName}; chat template: " +
                $"{serve.Template.Kind})");
            // Until SIGINT or SIGTERM; running requests get 10 seconds to finish, then are cancelled.
            try { await Task.Delay(Timeout.Infinite, ct); }
            catch (OperationCanceledException) { }
            using var grace = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await app.StopAsync(grace.Token);
            return 0;
        }));
        return cmd;
    }
}
