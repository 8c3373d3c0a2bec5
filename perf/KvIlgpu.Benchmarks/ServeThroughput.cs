using System.Diagnostics;
using System.Text;
using System.Text.Json;
using KvIlgpu.Chat;
using KvIlgpu.Cli.Serve;
using KvIlgpu.Compute;
using KvIlgpu.Engine;

namespace KvIlgpu.Benchmarks;

/// <summary>The HTTP server's overhead: the same load through kvilgpu serve (in-process Kestrel on loopback, streamed
/// completions of token-id prompts) and through the library directly (InferenceEngine.Submit), at 1, 8 and 32 concurrent
/// clients, each sending its requests one after another. Reports requests/s, output tokens/s and time to first token
/// p50/p99 (the first streamed chunk, or the first token of the handle). Each level runs both paths twice, alternating,
/// and keeps the second run of each.
/// Usage: serve-throughput MODEL [requests-per-client] [prompt-tokens] [output-tokens]</summary>
internal static class ServeThroughput
{
    public static async Task Run(string path, int perClient, int prompt, int output)
    {
        using var engine = InferenceEngine.Load(path, new EngineOptions(DeviceKind.Cpu, MaxBatchSize: 32));
        var c = engine.Config;
        await using var app = OpenAiServer.Build(engine, new ServeOptions("bench", null, 1024, 1 << 20, _ => null,
            new ChatTemplate(ChatTemplate.Family.Transcript)), "http://127.0.0.1:0");
        await app.StartAsync();
        using var http = new HttpClient { BaseAddress = new Uri(app.Urls.First()), Timeout = TimeSpan.FromMinutes(10) };
        Console.WriteLine($"model: {path}; {perClient} requests per client, {prompt}-token prompts (random ids), {output} tokens out, " +
            $"greedy, streamed; {engine.DeviceName}");
        Console.WriteLine();
        Console.WriteLine("| clients | path | requests/s | output tok/s | TTFT p50 ms | TTFT p99 ms | server / library tok/s |");
        Console.WriteLine("|---|---|---|---|---|---|---|");
        var rng = new Random(1);
        int[] Prompt() => [.. Enumerable.Range(0, prompt).Select(_ => rng.Next(3, c.VocabSize))];
        await Load(1, 1, () => Library(engine, Prompt(), 4)); // warm-up of both paths
        await Load(1, 1, () => Server(http, Prompt(), 4));
        foreach (int clients in new[] { 1, 8, 32 })
        {
            // Each path twice, alternating, the second run kept: the first pays for the new batch shapes' JIT and caches.
            LoadResult library = null!, server = null!;
            for (int round = 0; round < 2; round++)
            {
                library = await Load(clients, perClient, () => Library(engine, Prompt(), output));
                server = await Load(clients, perClient, () => Server(http, Prompt(), output));
            }
            foreach (var (name, r) in new[] { ("library", library), ("server", server) })
                Console.WriteLine($"| {clients} | {name} | {r.RequestsPerSecond:F2} | {r.TokensPerSecond:F1} | {r.P50 * 1e3:F0} | " +
                    $"{r.P99 * 1e3:F0} | {(name == "server" ? $"{server.TokensPerSecond / library.TokensPerSecond:F2}" : "")} |");
        }
    }

    private sealed record LoadResult(double RequestsPerSecond, double TokensPerSecond, double P50, double P99);

    /// <summary>clients concurrent loops of perClient requests each; one request returns (time to first token, tokens).</summary>
    private static async Task<LoadResult> Load(int clients, int perClient, Func<Task<(double Ttft, int Tokens)>> request)
    {
        var clock = Stopwatch.StartNew();
        var results = await Task.WhenAll(Enumerable.Range(0, clients).Select(async _ =>
        {
            var mine = new List<(double, int)>();
            for (int i = 0; i < perClient; i++) mine.Add(await request());
            return mine;
        }));
        double seconds = clock.Elapsed.TotalSeconds;
        var all = results.SelectMany(r => r).ToList();
        var ttft = all.Select(r => r.Item1).Order().ToList();
        double Percentile(double p) => ttft[Math.Min(ttft.Count - 1, (int)Math.Ceiling(p * ttft.Count) - 1)];
        return new LoadResult(all.Count / seconds, all.Sum(r => r.Item2) / seconds, Percentile(0.5), Percentile(0.99));
    }

    private static async Task<(double, int)> Library(InferenceEngine engine, int[] prompt, int output)
    {
        var clock = Stopwatch.StartNew();
        double ttft = 0;
        int tokens = 0;
        var handle = engine.Submit(prompt, new GenerationOptions(output, StopAtEos: false));
        await foreach (var _ in handle.Tokens) { if (tokens++ == 0) ttft = clock.Elapsed.TotalSeconds; }
        await handle.Completion;
        return (ttft, tokens);
    }

    private static async Task<(double, int)> Server(HttpClient http, int[] prompt, int output)
    {
        var clock = Stopwatch.StartNew();
        string body = JsonSerializer.Serialize(new { prompt, max_tokens = output, temperature = 0, stream = true });
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = new StringContent(body, Encoding.UTF8, "application/json"),
        };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        response.EnsureSuccessStatusCode();
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        double ttft = 0;
        int chunks = 0;
        while (await reader.ReadLineAsync() is { } line)
        {
            if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
            if (line == "data: [DONE]") break;
            if (chunks++ == 0) ttft = clock.Elapsed.TotalSeconds;
        }
        return (ttft, output);
    }
}
