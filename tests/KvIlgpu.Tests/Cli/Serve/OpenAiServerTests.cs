using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using KvIlgpu.Chat;
using KvIlgpu.Cli;
using KvIlgpu.Cli.Serve;
using KvIlgpu.Compression;
using KvIlgpu.Compute;
using KvIlgpu.Engine;
using KvIlgpu.Tests.Support;
using KvIlgpu.Tests.Tokenization;

namespace KvIlgpu.Tests.Cli.Serve;

/// <summary>kvilgpu serve's HTTP API in-process on a free port over a small random model with a tokenizer: its
/// completions are the engine's own greedy generations, streamed or not; stop strings, per-request KV compression and
/// OpenAI's error shapes with their statuses.</summary>
public sealed class OpenAiServerTests : IAsyncLifetime, IDisposable
{
    private readonly TempDir _dir = new();
    private InferenceEngine _engine = null!;
    private Microsoft.AspNetCore.Builder.WebApplication _app = null!;
    private HttpClient _http = null!;
    private const string Key = "sk-test";

    public async Task InitializeAsync()
    {
        TokenizerTests.WriteLlama2cTokenizer(_dir, out int vocab);
        TestModels.WriteLlama2c(_dir.File("model.bin"), TestModels.Random(TestModels.Config(vocab: vocab, seq: 256), seed: 8));
        _engine = InferenceEngine.Load(_dir.File("model.bin"), new EngineOptions(DeviceKind.Cpu, MaxBatchSize: 4));
        var options = new ServeOptions("tiny", Key, MaxWaiting: 64, MaxBodyBytes: 4096, Compression,
            new ChatTemplate(ChatTemplate.Family.ChatMl));
        _app = OpenAiServer.Build(_engine, options, "http://127.0.0.1:0");
        await _app.StartAsync();
        _http = new HttpClient { BaseAddress = new Uri(_app.Urls.First()) };
        _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Key);
    }

    /// <summary>The batch file's kv_* fields over no command-line defaults (the serve command passes its own).</summary>
    private static CompressionOptions? Compression(BatchLine line)
    {
        string policy = line.TryString("kv_policy") ?? "full";
        if (policy == "full") return null;
        var options = new CompressionOptions(new EvictionBudget(line.TryInt("kv_budget"), line.TryNumber("kv_keep_rate"),
            line.Int("protected_window", 8)), policy);
        options.Validate();
        return options;
    }

    public async Task DisposeAsync()
    {
        await _app.DisposeAsync();
        _engine.Dispose();
    }

    public void Dispose()
    {
        _http.Dispose();
        _dir.Dispose();
    }

    private async Task<(HttpStatusCode Status, JsonElement Body)> Post(string path, string json)
    {
        using var response = await _http.PostAsync(path, new StringContent(json, Encoding.UTF8, "application/json"));
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, JsonDocument.Parse(text).RootElement.Clone());
    }

    private Task<(HttpStatusCode Status, JsonElement Body)> Post(string path, object body) => Post(path, JsonSerializer.Serialize(body));

    private Task<(string Text, int Count)> Greedy(IReadOnlyList<int> prompt, int maxTokens) => GreedyText.Of(_engine, prompt, maxTokens);

    [Fact]
    public async Task A_completion_is_the_engines_greedy_generation_with_usage_and_kv_bytes()
    {
        var (expected, count) = await Greedy(_engine.Encode("the cat sat"), 12);
        var (status, body) = await Post("/v1/completions",
            new { model = "tiny", prompt = "the cat sat", max_tokens = 12, temperature = 0 });
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("text_completion", body.GetProperty("object").GetString());
        var choice = body.GetProperty("choices")[0];
        Assert.Equal(expected, choice.GetProperty("text").GetString());
        Assert.Equal(count == 12 ? "length" : "stop", choice.GetProperty("finish_reason").GetString());
        var usage = body.GetProperty("usage");
        Assert.Equal(_engine.Encode("the cat sat").Count, usage.GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(count, usage.GetProperty("completion_tokens").GetInt32());
        Assert.True(body.GetProperty("kv_usage").GetProperty("peak_kv_bytes").GetInt64() > 0);
    }

    [Fact]
    public async Task A_streamed_completion_sends_the_same_text_in_chunks_then_usage_then_done()
    {
        var (expected, _) = await Greedy(_engine.Encode("the mat"), 10);
        string json = JsonSerializer.Serialize(new
        {
            prompt = "the mat", max_tokens = 10, temperature = 0, stream = true, stream_options = new { include_usage = true },
        });
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = new StringContent(json, Encoding.UTF8, "application/json"),
        };
        using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
        var events = (await response.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries)
            .Select(e => e.StartsWith("data: ", StringComparison.Ordinal) ? e[6..] : throw new InvalidDataException(e)).ToList();
        Assert.Equal("[DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonDocument.Parse(e).RootElement.Clone()).ToList();
        Assert.Equal(expected, string.Concat(chunks.Where(c => c.GetProperty("choices").GetArrayLength() > 0)
            .Select(c => c.GetProperty("choices")[0].GetProperty("text").GetString())));
        Assert.Equal(10, chunks[^1].GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.NotEqual(JsonValueKind.Null, chunks[^2].GetProperty("choices")[0].GetProperty("finish_reason").ValueKind);
    }

    /// <summary>/metrics is Prometheus text: after a completion of 5 tokens its counters and histograms have counted them,
    /// and the engine's blocks are there.</summary>
    [Fact]
    public async Task Metrics_count_requests_tokens_and_latencies_in_prometheus_text()
    {
        var (status, _) = await Post("/v1/completions", new { prompt = "the cat", max_tokens = 5, temperature = 0 });
        Assert.Equal(HttpStatusCode.OK, status);
        string text = await _http.GetStringAsync("/metrics");
        double Value(string name) => double.Parse(text.Split('\n').First(l => l.StartsWith(name + " ", StringComparison.Ordinal)
            || l.StartsWith(name + "{", StringComparison.Ordinal)).Split(' ')[^1], System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(Value("kvilgpu_generated_tokens_total") >= 5);
        Assert.True(Value("kvilgpu_time_to_first_token_seconds_count") >= 1);
        Assert.True(Value("kvilgpu_inter_token_latency_seconds_count") >= 4);
        Assert.Equal(_engine.Stats.BlocksTotal, Value("kvilgpu_kv_blocks_used") + Value("kvilgpu_kv_blocks_free"));
        Assert.Contains("kvilgpu_requests_total{endpoint=\"/v1/completions\",status=\"200\"}", text);
        Assert.Contains("# TYPE kvilgpu_waiting_sequences gauge", text);
    }

    [Fact]
    public async Task A_stop_string_ends_the_text_before_it()
    {
        var (full, _) = await Greedy(_engine.Encode("the cat"), 24);
        // A stop string taken from the middle of what the model will say.
        string stop = full.Substring(full.Length / 2, Math.Min(3, full.Length - full.Length / 2));
        var (status, body) = await Post("/v1/completions",
            new { prompt = "the cat", max_tokens = 24, temperature = 0, stop = new[] { stop } });
        Assert.Equal(HttpStatusCode.OK, status);
        var choice = body.GetProperty("choices")[0];
        Assert.Equal(full[..full.IndexOf(stop, StringComparison.Ordinal)], choice.GetProperty("text").GetString());
        Assert.Equal("stop", choice.GetProperty("finish_reason").GetString());
    }

    [Fact]
    public async Task A_chat_completion_renders_the_messages_with_the_template()
    {
        var prompt = new ChatTemplate(ChatTemplate.Family.ChatMl).Render([("system", "be kind"), ("user", "the cat")]);
        var (expected, _) = await Greedy(_engine.Tokenizer!.Encode(prompt, addBos: true), 6);
        var (status, body) = await Post("/v1/chat/completions", new
        {
            messages = new[] { new { role = "system", content = "be kind" }, new { role = "user", content = "the cat" } },
            max_tokens = 6, temperature = 0,
        });
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("chat.completion", body.GetProperty("object").GetString());
        var message = body.GetProperty("choices")[0].GetProperty("message");
        Assert.Equal("assistant", message.GetProperty("role").GetString());
        Assert.Equal(expected, message.GetProperty("content").GetString());
    }

    [Fact]
    public async Task Per_request_kv_compression_evicts_and_reports_it()
    {
        string prompt = string.Join(" ", Enumerable.Repeat("the cat sat on the mat", 6));
        var (status, body) = await Post("/v1/completions", new
        {
            prompt, max_tokens = 4, temperature = 0, kv_policy = "kvcompress", kv_budget = 16, protected_window = 4,
        });
        Assert.True(status == HttpStatusCode.OK, body.ToString());
        Assert.True(body.GetProperty("kv_usage").GetProperty("evicted_kvs").GetInt64() > 0, body.ToString());
    }

    /// <summary>The official OpenAI .NET SDK talks to the server: a chat completion and a streamed one parse, carry the
    /// engine's text, finish reason and usage.</summary>
    [Fact]
    public async Task The_openai_sdk_is_a_client_streaming_and_not()
    {
        var prompt = new ChatTemplate(ChatTemplate.Family.ChatMl).Render([("user", "the cat")]);
        var (expected, count) = await Greedy(_engine.Tokenizer!.Encode(prompt, addBos: true), 8);
        var client = new OpenAI.Chat.ChatClient("tiny", new System.ClientModel.ApiKeyCredential(Key),
            new OpenAI.OpenAIClientOptions { Endpoint = new Uri(_http.BaseAddress!, "v1") });
        var options = new OpenAI.Chat.ChatCompletionOptions { MaxOutputTokenCount = 8, Temperature = 0 };
        OpenAI.Chat.ChatMessage[] messages = [OpenAI.Chat.ChatMessage.CreateUserMessage("the cat")];
        OpenAI.Chat.ChatCompletion completion = await client.CompleteChatAsync(messages, options);
        Assert.Equal(expected, completion.Content[0].Text);
        Assert.Equal(count, completion.Usage.OutputTokenCount);
        Assert.Equal(count == 8 ? OpenAI.Chat.ChatFinishReason.Length : OpenAI.Chat.ChatFinishReason.Stop, completion.FinishReason);
        var streamed = new StringBuilder();
        OpenAI.Chat.ChatFinishReason? finish = null;
        await foreach (var update in client.CompleteChatStreamingAsync(messages, options))
        {
            foreach (var part in update.ContentUpdate) streamed.Append(part.Text);
            finish ??= update.FinishReason;
        }
        Assert.Equal(expected, streamed.ToString());
        Assert.Equal(completion.FinishReason, finish);
    }

    /// <summary>A client that goes away mid-stream: afterwards no sequence runs and no block is held (the request is
    /// cancelled once Kestrel notices the closed connection, and the engine frees it at its next step).</summary>
    [Fact]
    public async Task A_client_that_disconnects_mid_stream_frees_its_sequence_and_blocks()
    {
        TokenizerTests.WriteLlama2cTokenizer(_dir, out int vocab);
        var config = TestModels.Config(dim: 768, hidden: 1536, layers: 8, heads: 8, kvHeads: 2, vocab: vocab, seq: 512);
        TestModels.WriteLlama2c(_dir.File("slow.bin"), TestModels.Random(config, seed: 3));
        using var engine = InferenceEngine.Load(_dir.File("slow.bin"), new EngineOptions(DeviceKind.Cpu, MaxBatchSize: 2));
        await using var app = OpenAiServer.Build(engine, new ServeOptions("slow", null, 4, 1 << 20, Compression,
            new ChatTemplate(ChatTemplate.Family.Transcript)), "http://127.0.0.1:0");
        await app.StartAsync();
        // A client that hangs up: by default the handler would drain an unfinished response (up to 1 MB, for 2 s) to reuse
        // the connection, which a server cannot tell from a slow reader.
        using var http = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = new Uri(app.Urls.First()) };
        string json = JsonSerializer.Serialize(new { prompt = "the cat", max_tokens = 500, temperature = 0, stream = true });
        using var cancel = new CancellationTokenSource();
        using (var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = new StringContent(json, Encoding.UTF8, "application/json"),
        })
        using (var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancel.Token))
        {
            var body = await response.Content.ReadAsStreamAsync(cancel.Token);
            var buffer = new byte[64];
            Assert.True(await body.ReadAsync(buffer, cancel.Token) > 0); // the first chunk has come
            // The client gives up while it reads on: cancelling a pending read aborts the connection.
            cancel.CancelAfter(TimeSpan.FromMilliseconds(50));
            await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
            {
                while (await body.ReadAsync(buffer, cancel.Token) > 0) { }
            });
        }
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while ((engine.Stats.Running > 0 || engine.Stats.BlocksUsed > 0) && clock.Elapsed < TimeSpan.FromSeconds(20))
            await Task.Delay(20);
        Assert.Equal(0, engine.Stats.Running);
        Assert.Equal(0, engine.Stats.BlocksUsed);
        // Not asserted: that it stopped before its 500 tokens. It usually does (in 4 of 5 runs here), but the disconnect
        // reaches the request only when Kestrel notices the closed connection, which is not bounded in time.
    }

    /// <summary>The load test: 32 concurrent streaming clients with different prompts and KV policies, 4 of them
    /// disconnecting after their first chunk, and 10 malformed requests among them. Every well-formed request that stays
    /// gets exactly the text of its solo run, the malformed ones get 400, afterwards /metrics shows no KV block in use,
    /// and the server still answers.</summary>
    [Fact]
    public async Task Thirty_two_concurrent_streams_with_disconnects_and_malformed_requests_each_get_their_solo_text()
    {
        string[] words = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran"];
        string[] policies = ["full", "kvcompress", "streamingllm", "h2o"];
        var rng = new Random(4);
        var requests = Enumerable.Range(0, 32).Select(i => new
        {
            Prompt = string.Join(" ", Enumerable.Range(0, 4 + rng.Next(20)).Select(_ => words[rng.Next(words.Length)])),
            Policy = policies[i % policies.Length],
            Tokens = 8 + rng.Next(16),
            Leaves = i % 8 == 3,
        }).ToList();
        object Body(int i) => requests[i].Policy == "full"
            ? new { prompt = requests[i].Prompt, max_tokens = requests[i].Tokens, temperature = 0, stream = true }
            : new
            {
                prompt = requests[i].Prompt, max_tokens = requests[i].Tokens, temperature = 0, stream = true,
                kv_policy = requests[i].Policy, kv_budget = 16, protected_window = 4
            };
        // The solo runs, one at a time, streamed the same way.
        var solo = new List<string>();
        for (int i = 0; i < requests.Count; i++) solo.Add(await StreamText(_http, Body(i), leave: false));
        var malformed = Enumerable.Range(0, 10).Select(i => Post("/v1/completions", i % 2 == 0 ? "{\"prompt\": 5}"
            : "{\"prompt\": \"x\", \"temperature\": \"hot\"}")).ToList();
        var runs = Enumerable.Range(0, requests.Count).Select(i => StreamText(_http, Body(i), requests[i].Leaves)).ToList();
        var texts = await Task.WhenAll(runs);
        var refused = await Task.WhenAll(malformed);
        for (int i = 0; i < requests.Count; i++)
            if (!requests[i].Leaves) Assert.True(solo[i] == texts[i], $"request {i} ({requests[i].Policy}): batched text differs");
        Assert.All(refused, m => Assert.Equal(HttpStatusCode.BadRequest, m.Status));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        double used = -1;
        while (clock.Elapsed < TimeSpan.FromSeconds(10))
        {
            string metrics = await _http.GetStringAsync("/metrics");
            used = double.Parse(metrics.Split('\n').First(l => l.StartsWith("kvilgpu_kv_blocks_used ", StringComparison.Ordinal))
                .Split(' ')[^1], System.Globalization.CultureInfo.InvariantCulture);
            if (used == 0) break;
            await Task.Delay(20);
        }
        Assert.Equal(0, used);
        Assert.Equal(HttpStatusCode.OK, (await _http.GetAsync("/health")).StatusCode);
    }

    /// <summary>kvilgpu serve as a process: it says where it listens, answers, and on SIGTERM stops within its 10-second
    /// grace with exit code 0, a request that was running cancelled or finished.</summary>
    [Fact]
    public async Task Serve_stops_on_sigterm_within_its_grace_period()
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS()) return; // SIGTERM is a POSIX signal
        var psi = new System.Diagnostics.ProcessStartInfo("dotnet")
        {
            RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false,
        };
        foreach (var a in new[] { Path.Combine(AppContext.BaseDirectory, "KvIlgpu.Cli.dll"), "serve", "--model", _dir.File("model.bin"),
            "--port", "0", "--device", "cpu" }) psi.ArgumentList.Add(a);
        using var process = System.Diagnostics.Process.Start(psi)!;
        string? url = null;
        while (url == null && await process.StandardError.ReadLineAsync() is { } line)
            if (line.StartsWith("serving ", StringComparison.Ordinal)) url = line.Split(' ')[3];
        Assert.NotNull(url);
        using var http = new HttpClient { BaseAddress = new Uri(url!) };
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/health")).StatusCode);
        var running = http.PostAsync("/v1/completions", new StringContent(JsonSerializer.Serialize(new
        {
            prompt = "the cat", max_tokens = 200, temperature = 0, stream = true,
        })));
        await Task.Delay(200);
        string pid = process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture);
        using (var kill = System.Diagnostics.Process.Start("kill", ["-TERM", pid])) await kill!.WaitForExitAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await process.WaitForExitAsync(timeout.Token);
        Assert.Equal(0, process.ExitCode);
        try { await running; } catch (HttpRequestException) { } // finished, or cut off by the shutdown: either is fine
    }

    /// <summary>A full waiting queue answers 429 with Retry-After (a queue of 0 is always full).</summary>
    [Fact]
    public async Task A_full_queue_answers_429_with_retry_after()
    {
        await using var app = OpenAiServer.Build(_engine, new ServeOptions("tiny", null, 0, 4096, Compression,
            new ChatTemplate(ChatTemplate.Family.Transcript)), "http://127.0.0.1:0");
        await app.StartAsync();
        using var http = new HttpClient { BaseAddress = new Uri(app.Urls.First()) };
        using var response = await http.PostAsync("/v1/completions", new StringContent("{\"prompt\": \"the\"}"));
        Assert.Equal(HttpStatusCode.TooManyRequests, response.StatusCode);
        Assert.Equal("1", response.Headers.RetryAfter!.ToString());
        Assert.Equal("rate_limit_error", JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement
            .GetProperty("error").GetProperty("type").GetString());
    }

    /// <summary>Streams a completion and returns its text; when leave is set, hangs up after the first chunk.</summary>
    private static async Task<string> StreamText(HttpClient http, object body, bool leave)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = new StringContent(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json"),
        };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        if (!response.IsSuccessStatusCode)
            throw new HttpRequestException($"{(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        var text = new StringBuilder();
        while (await reader.ReadLineAsync() is { } line)
        {
            if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
            if (line == "data: [DONE]") break;
            var chunk = JsonDocument.Parse(line[6..]).RootElement;
            if (chunk.GetProperty("choices").GetArrayLength() > 0)
                text.Append(chunk.GetProperty("choices")[0].GetProperty("text").GetString());
            if (leave) return text.ToString();
        }
        return text.ToString();
    }

    public static TheoryData<string, string, int, string?> BadRequests => new()
    {
        { "/v1/completions", "{not json", 400, null },
        { "/v1/completions", "{\"max_tokens\": 4}", 400, "prompt" },
        { "/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": \"many\"}", 400, "max_tokens" },
        { "/v1/completions", "{\"prompt\": \"x\", \"n\": 2}", 400, "n" },
        { "/v1/completions", "{\"prompt\": \"x\", \"stop\": 5}", 400, "stop" },
        { "/v1/completions", "{\"prompt\": \"x\", \"kv_policy\": \"kvcompress\", \"kv_budget\": 0}", 400, "kv_budget" },
        { "/v1/completions", "{\"prompt\": [1, 99999999]}", 400, "prompt" },
        { "/v1/chat/completions", "{\"messages\": [{\"role\": \"wizard\", \"content\": \"x\"}]}", 400, "messages" },
        { "/v1/nothing", "{}", 404, null },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task A_bad_request_gets_openais_error_shape_naming_the_field(string path, string json, int status, string? param)
    {
        var (code, body) = await Post(path, json);
        Assert.Equal(status, (int)code);
        var error = body.GetProperty("error");
        Assert.False(string.IsNullOrEmpty(error.GetProperty("message").GetString()));
        Assert.Equal(param, error.GetProperty("param").GetString());
    }

    [Fact]
    public async Task Without_the_api_key_a_request_gets_401_and_an_over_long_body_413()
    {
        using var anonymous = new HttpClient { BaseAddress = _http.BaseAddress };
        using var response = await anonymous.PostAsync("/v1/completions", new StringContent("{\"prompt\": \"x\"}"));
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal("authentication_error", JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement
            .GetProperty("error").GetProperty("type").GetString());
        var (status, body) = await Post("/v1/completions", new { prompt = new string('a', 8000) });
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, status);
        Assert.Contains("4096 bytes", body.GetProperty("error").GetProperty("message").GetString());
        // Health needs no key; the model list is under /v1 and does.
        Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("/health")).StatusCode);
        var models = JsonDocument.Parse(await _http.GetStringAsync("/v1/models")).RootElement;
        Assert.Equal("tiny", models.GetProperty("data")[0].GetProperty("id").GetString());
    }
}
