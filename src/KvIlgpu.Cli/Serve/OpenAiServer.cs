using System.Text.Json;
using KvIlgpu.Chat;
using KvIlgpu.Compression;
using KvIlgpu.Engine;
using KvIlgpu.Models;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Prometheus;

namespace KvIlgpu.Cli.Serve;

/// <summary>What the server needs besides the engine.</summary>
/// <param name="ModelName">The id /v1/models lists and responses carry.</param>
/// <param name="ApiKey">When set, /v1 requests need <c>Authorization: Bearer KEY</c>.</param>
/// <param name="MaxWaiting">Requests that may wait for a batch slot; past it a request gets 429.</param>
/// <param name="MaxBodyBytes">The largest request body; past it 413.</param>
/// <param name="Compression">A request's KV compression from its kv_* fields on top of the command line's defaults.</param>
/// <param name="Template">How chat messages become a prompt.</param>
internal sealed record ServeOptions(string ModelName, string? ApiKey, int MaxWaiting, long MaxBodyBytes,
    Func<BatchLine, CompressionOptions?> Compression, ChatTemplate Template);

/// <summary>The OpenAI-compatible HTTP API over one <see cref="InferenceEngine"/>: POST /v1/completions and
/// /v1/chat/completions (streamed as server-sent events when asked), GET /v1/models and /health. Requests are batched
/// by the engine's scheduler like any others, each with its own sampling and KV compression (the batch file's kv_*
/// fields), and each response says what KV cache it held. Errors are OpenAI's JSON shape with the status that fits.</summary>
internal static class OpenAiServer
{
    /// <summary>A server listening on url (http://host:port; port 0 picks a free one).</summary>
    public static WebApplication Build(InferenceEngine engine, ServeOptions options, string url)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls(url);
        builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = options.MaxBodyBytes);
        var app = builder.Build();
        var metrics = new ServerMetrics(engine);
        app.Use(async (context, next) =>
        {
            try
            {
                if (options.ApiKey != null && context.Request.Path.StartsWithSegments("/v1")
                    && context.Request.Headers.Authorization.ToString() != $"Bearer {options.ApiKey}")
                    throw new OpenAiError(401, "a valid API key is needed: Authorization: Bearer KEY", type: "authentication_error");
                await next(context);
            }
            catch (OpenAiError e) when (!context.Response.HasStarted) { await e.WriteAsync(context); }
            catch (BadHttpRequestException e) when (!context.Response.HasStarted)
            {
                await new OpenAiError(e.StatusCode, e.StatusCode == 413
                    ? $"the request body is larger than {options.MaxBodyBytes} bytes" : e.Message).WriteAsync(context);
            }
            catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested) { }
            catch (Exception e) when (!context.Response.HasStarted)
            {
                await new OpenAiError(500, CliErrors.Describe(e), type: "server_error").WriteAsync(context);
            }
            finally
            {
                metrics.Requests.WithLabels(context.Request.Path.Value ?? "", context.Response.StatusCode.ToString(
                    System.Globalization.CultureInfo.InvariantCulture)).Inc();
            }
        });
        app.MapMetrics("/metrics", metrics.Registry);
        app.MapGet("/health", () => Results.Json(new { status = "ok" }));
        app.MapGet("/v1/models", () => Results.Json(new
        {
            @object = "list",
            data = new[] { new { id = options.ModelName, @object = "model", created = 0, owned_by = "kvilgpu" } },
        }));
        app.MapPost("/v1/completions", context => Complete(context, engine, options, metrics, chat: false));
        app.MapPost("/v1/chat/completions", context => Complete(context, engine, options, metrics, chat: true));
        app.MapFallback(context => throw new OpenAiError(404, $"no route {context.Request.Method} {context.Request.Path}",
            type: "not_found_error"));
        return app;
    }

    private sealed record Request(IReadOnlyList<int> Prompt, GenerationOptions Options, IReadOnlyList<string> Stops, bool Stream,
        bool IncludeUsage);

    private static async Task Complete(HttpContext context, InferenceEngine engine, ServeOptions options, ServerMetrics metrics,
        bool chat)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        JsonElement body;
        try
        {
            using var document = await JsonDocument.ParseAsync(context.Request.Body, cancellationToken: context.RequestAborted);
            body = document.RootElement.Clone();
        }
        catch (JsonException e) { throw new OpenAiError(400, $"the body is not valid JSON ({e.Message})"); }
        var request = Parse(body, engine, options, chat);
        if (engine.Stats.Waiting >= options.MaxWaiting)
            throw new OpenAiError(429, $"{engine.Stats.Waiting} requests are already waiting; retry later", type: "rate_limit_error");
        string id = (chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N")[..24];
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
        GenerationHandle handle;
        try { handle = engine.Submit(request.Prompt, request.Options, id, cancel.Token); }
        catch (Exception e) when (e is ArgumentException or ContextOverflowException)
        {
            throw new OpenAiError(400, CliErrors.Describe(e), chat ? "messages" : "prompt");
        }
        var stream = request.Stream ? new EventStream(context, id, created, options.ModelName, chat) : null;
        if (stream != null) await stream.StartAsync();
        var filter = new StopStringFilter(request.Stops);
        int generated = 0;
        string? finish = null;
        double last = 0;
        await foreach (var token in handle.Tokens.WithCancellation(context.RequestAborted))
        {
            double now = clock.Elapsed.TotalSeconds;
            (generated == 0 ? metrics.TimeToFirstToken : metrics.InterTokenLatency).Observe(now - last);
            last = now;
            metrics.GeneratedTokens.Inc();
            generated++;
            string released = filter.Append(token.Text);
            if (stream != null && released.Length > 0) await stream.DeltaAsync(released);
            if (filter.Stopped)
            {
                finish = "stop";
                await cancel.CancelAsync(); // the engine frees the sequence at its next step
                break;
            }
        }
        GenerationResult? result = null;
        if (finish == null)
        {
            result = await handle.Completion;
            finish = result.StopReason == "eos" ? "stop" : "length";
        }
        metrics.PromptTokens.Inc(request.Prompt.Count);
        var usage = new
        {
            prompt_tokens = request.Prompt.Count, completion_tokens = generated, total_tokens = request.Prompt.Count + generated,
        };
        object? kv = result == null ? null : new
        {
            peak_kv_bytes = result.KvUsage.PeakBytes, mean_kv_bytes = Math.Round(result.KvUsage.MeanBytes), evicted_kvs = result.EvictedKvs,
        };
        if (stream != null)
        {
            if (filter.Flush() is { Length: > 0 } rest) await stream.DeltaAsync(rest);
            await stream.FinishAsync(finish, request.IncludeUsage ? usage : null, kv);
            return;
        }
        object choice = chat
            ? new { index = 0, message = new { role = "assistant", content = filter.Text }, finish_reason = finish }
            : new { index = 0, text = filter.Text, logprobs = (object?)null, finish_reason = finish };
        await context.Response.WriteAsJsonAsync(new
        {
            id, @object = chat ? "chat.completion" : "text_completion", created, model = options.ModelName, choices = new[] { choice },
            usage, kv_usage = kv,
        });
    }

    /// <summary>A request body as the engine's prompt and options; a bad field is a 400 naming it.</summary>
    private static Request Parse(JsonElement body, InferenceEngine engine, ServeOptions options, bool chat)
    {
        try
        {
            var line = BatchLine.FromObject("request", body);
            IReadOnlyList<int> prompt = chat ? ChatPrompt(body, engine, options.Template) : CompletionPrompt(body, line, engine);
            // max_completion_tokens is the chat API's current name for max_tokens (the OpenAI SDK sends it).
            string maxField = line.Has("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
            int maxTokens = line.TryInt(maxField) ?? (chat ? engine.Config.MaxSeqLen : 16);
            if (maxTokens < 1) throw new OpenAiError(400, $"{maxField} must be >= 1 (got {maxTokens})", maxField);
            if (line.TryInt("n") is int n && n != 1) throw new OpenAiError(400, $"only n = 1 is supported (got {n})", "n");
            var sampling = new SamplingOptions((float)(line.TryNumber("temperature") ?? 1), 0, (float)(line.TryNumber("top_p") ?? 1),
                line.TryInt("seed") ?? 0);
            sampling.Validate();
            var stops = body.TryGetProperty("stop", out var stop) ? stop.ValueKind switch
            {
                JsonValueKind.String => [stop.GetString()!],
                JsonValueKind.Array when stop.EnumerateArray().All(s => s.ValueKind == JsonValueKind.String) =>
                    stop.EnumerateArray().Select(s => s.GetString()!).ToList(),
                JsonValueKind.Null => [],
                _ => throw new OpenAiError(400, "stop must be a string or an array of strings", "stop"),
            } : new List<string>();
            if (stops.Any(s => s.Length == 0)) throw new OpenAiError(400, "a stop string cannot be empty", "stop");
            bool stream = body.TryGetProperty("stream", out var st) && st.ValueKind == JsonValueKind.True;
            bool includeUsage = body.TryGetProperty("stream_options", out var so) && so.ValueKind == JsonValueKind.Object
                && so.TryGetProperty("include_usage", out var iu) && iu.ValueKind == JsonValueKind.True;
            var compression = options.Compression(line);
            return new Request(prompt, new GenerationOptions(maxTokens, sampling, Compression: compression), stops, stream, includeUsage);
        }
        catch (BatchLineException e) { throw new OpenAiError(400, e.Message["request: ".Length..], e.Field); }
        catch (InvalidOptionException e)
        {
            throw new OpenAiError(400, OptionNames.ForUser(e.Message, batchLine: true), OptionNames.Field(e.Option));
        }
    }

    private static IReadOnlyList<int> CompletionPrompt(JsonElement body, BatchLine line, InferenceEngine engine)
    {
        if (!body.TryGetProperty("prompt", out var prompt)) throw new OpenAiError(400, "prompt is required", "prompt");
        if (prompt.ValueKind == JsonValueKind.String)
            return engine.Tokenizer == null ? throw new OpenAiError(400, "this model has no tokenizer: give prompt as token ids", "prompt")
                : engine.Encode(prompt.GetString()!);
        return line.TryInts("prompt") ?? throw new OpenAiError(400, "prompt must be a string or an array of token ids", "prompt");
    }

    private static IReadOnlyList<int> ChatPrompt(JsonElement body, InferenceEngine engine, ChatTemplate template)
    {
        if (!body.TryGetProperty("messages", out var messages) || messages.ValueKind != JsonValueKind.Array
            || messages.GetArrayLength() == 0)
            throw new OpenAiError(400, "messages must be a non-empty array of {role, content}", "messages");
        var list = new List<(string, string)>();
        foreach (var m in messages.EnumerateArray())
        {
            if (m.ValueKind != JsonValueKind.Object || !m.TryGetProperty("role", out var role) || role.ValueKind != JsonValueKind.String
                || role.GetString() is not ("system" or "user" or "assistant")
                || !m.TryGetProperty("content", out var content) || content.ValueKind != JsonValueKind.String)
                throw new OpenAiError(400, "each message is {\"role\": system|user|assistant, \"content\": string}", "messages");
            list.Add((role.GetString()!, content.GetString()!));
        }
        var tokenizer = engine.Tokenizer ?? throw new OpenAiError(400, "this model has no tokenizer, so it cannot chat", "messages");
        return tokenizer.Encode(template.Render(list), addBos: !template.IncludesBos && tokenizer.BosId != null);
    }

    /// <summary>A streamed response: server-sent events of OpenAI's chunk shape, ended by <c>data: [DONE]</c>.</summary>
    private sealed class EventStream(HttpContext context, string id, long created, string model, bool chat)
    {
        private bool _roleSent;

        public Task StartAsync()
        {
            context.Response.ContentType = "text/event-stream";
            context.Response.Headers.CacheControl = "no-cache";
            return context.Response.Body.FlushAsync();
        }

        public Task DeltaAsync(string text) => SendAsync(Chunk(text, null));

        public async Task FinishAsync(string finish, object? usage, object? kv)
        {
            await SendAsync(Chunk(null, finish, kv));
            if (usage != null)
                await SendAsync(new
                {
                    id, @object = chat ? "chat.completion.chunk" : "text_completion", created, model,
                    choices = Array.Empty<object>(), usage
                });
            await context.Response.WriteAsync("data: [DONE]\n\n");
            await context.Response.Body.FlushAsync();
        }

        private object Chunk(string? text, string? finish, object? kv = null)
        {
            object choice;
            if (chat)
            {
                object delta = !_roleSent ? new { role = "assistant", content = text ?? "" }
                    : text == null ? new { } : new { content = text };
                _roleSent = true;
                choice = new { index = 0, delta, finish_reason = finish };
            }
            else choice = new { index = 0, text = text ?? "", logprobs = (object?)null, finish_reason = finish };
            string type = chat ? "chat.completion.chunk" : "text_completion";
            // The last chunk (with its finish reason) also says what KV cache the request held.
            return kv == null ? new { id, @object = type, created, model, choices = new[] { choice } }
                : new { id, @object = type, created, model, choices = new[] { choice }, kv_usage = kv };
        }

        private async Task SendAsync(object chunk)
        {
            await context.Response.WriteAsync($"data: {JsonSerializer.Serialize(chunk)}\n\n", context.RequestAborted);
            await context.Response.Body.FlushAsync(context.RequestAborted);
        }
    }
}
