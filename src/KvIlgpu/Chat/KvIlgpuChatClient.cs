using System.Runtime.CompilerServices;
using System.Text;
using KvIlgpu.Engine;
using Microsoft.Extensions.AI;

namespace KvIlgpu.Chat;

/// <summary>An <see cref="IChatClient"/> (Microsoft.Extensions.AI) over an <see cref="InferenceEngine"/>, so Semantic
/// Kernel and the Microsoft.Extensions.AI pipeline can use the engine. Messages are rendered with a
/// <see cref="ChatTemplate"/> (by default the one the model folder's tokenizer_config.json carries); ChatOptions map to
/// the engine's: MaxOutputTokens, Temperature, TopP, TopK, Seed and StopSequences (the text ends before the first). A
/// request's KV compression goes in <c>AdditionalProperties["kv_compression"]</c> as a
/// <see cref="Compression.CompressionOptions"/>. Concurrent calls are batched by the engine like any other requests.
/// The client does not own the engine.
/// <code>
/// using var engine = InferenceEngine.Load("model-dir");
/// IChatClient chat = new KvIlgpuChatClient(engine, ChatTemplate.ForModel("model-dir"));
/// var reply = await chat.GetResponseAsync("Hello!");
/// </code></summary>
public sealed class KvIlgpuChatClient : IChatClient
{
    /// <summary>The key of <see cref="ChatOptions.AdditionalProperties"/> that carries a request's compression.</summary>
    public const string CompressionKey = "kv_compression";

    private readonly InferenceEngine _engine;
    private readonly ChatTemplate _template;
    private readonly string _modelId;

    /// <param name="engine">The engine to generate with (it needs a tokenizer).</param>
    /// <param name="template">How messages become a prompt; null: a plain transcript.</param>
    /// <param name="modelId">The id reported in metadata and responses.</param>
    public KvIlgpuChatClient(InferenceEngine engine, ChatTemplate? template = null, string modelId = "kvilgpu")
    {
        _engine = engine;
        _template = template ?? new ChatTemplate(ChatTemplate.Family.Transcript);
        _modelId = modelId;
        if (engine.Tokenizer == null) throw new ArgumentException("the engine's model has no tokenizer, so it cannot chat", nameof(engine));
    }

    /// <inheritdoc/>
    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        var text = new StringBuilder();
        ChatFinishReason? finish = null;
        UsageDetails? usage = null;
        string? id = null;
        await foreach (var update in GetStreamingResponseAsync(messages, options, cancellationToken).ConfigureAwait(false))
        {
            text.Append(update.Text);
            finish = update.FinishReason ?? finish;
            id ??= update.ResponseId;
            foreach (var u in update.Contents.OfType<UsageContent>()) usage = u.Details;
        }
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, text.ToString()))
        {
            FinishReason = finish, Usage = usage, ModelId = _modelId, ResponseId = id, CreatedAt = DateTimeOffset.UtcNow,
        };
    }

    /// <inheritdoc/>
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages,
        ChatOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var tokenizer = _engine.Tokenizer!;
        var prompt = tokenizer.Encode(_template.Render([.. messages.Select(m => (m.Role.Value, m.Text))]),
            addBos: !_template.IncludesBos && tokenizer.BosId != null);
        var sampling = new SamplingOptions(options?.Temperature ?? 1f, options?.TopK ?? 0, options?.TopP ?? 1f,
            (int)(options?.Seed ?? 0));
        sampling.Validate();
        var compression = options?.AdditionalProperties?.TryGetValue(CompressionKey, out var c) == true
            ? c as Compression.CompressionOptions
                ?? throw new ArgumentException($"AdditionalProperties[\"{CompressionKey}\"] must be a CompressionOptions", nameof(options))
            : null;
        int maxTokens = options?.MaxOutputTokens ?? _engine.Config.MaxSeqLen;
        var filter = new StopStringFilter(options?.StopSequences);
        string id = "chatcmpl-" + Guid.NewGuid().ToString("N")[..24];
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var handle = _engine.Submit(prompt, new GenerationOptions(maxTokens, sampling, Compression: compression), id, cancel.Token);
        int generated = 0;
        ChatFinishReason? finish = null;
        await foreach (var token in handle.Tokens.WithCancellation(cancellationToken).ConfigureAwait(false))
        {
            generated++;
            string released = filter.Append(token.Text);
            if (filter.Stopped)
            {
                finish = ChatFinishReason.Stop;
                await cancel.CancelAsync().ConfigureAwait(false);
                if (released.Length > 0) yield return Update(id, released);
                break;
            }
            if (released.Length > 0) yield return Update(id, released);
        }
        if (finish == null)
        {
            var result = await handle.Completion.ConfigureAwait(false);
            finish = result.StopReason == "eos" ? ChatFinishReason.Stop : ChatFinishReason.Length;
        }
        var last = Update(id, filter.Flush());
        last.FinishReason = finish;
        last.Contents.Add(new UsageContent(new UsageDetails
        {
            InputTokenCount = prompt.Count, OutputTokenCount = generated, TotalTokenCount = prompt.Count + generated,
        }));
        yield return last;
    }

    private ChatResponseUpdate Update(string id, string text) =>
        new(ChatRole.Assistant, text) { ResponseId = id, ModelId = _modelId, CreatedAt = DateTimeOffset.UtcNow };

    /// <inheritdoc/>
    public object? GetService(Type serviceType, object? serviceKey = null) =>
        serviceKey != null ? null
        : serviceType == typeof(ChatClientMetadata) ? new ChatClientMetadata("kvilgpu", null, _modelId)
        : serviceType.IsInstanceOfType(this) ? this
        : serviceType.IsInstanceOfType(_engine) ? _engine
        : null;

    /// <summary>Nothing to free: the engine belongs to the caller.</summary>
    public void Dispose() { }
}
