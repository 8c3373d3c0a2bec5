using KvIlgpu.Chat;
using KvIlgpu.Compute;
using KvIlgpu.Engine;
using KvIlgpu.Tests.Support;
using KvIlgpu.Tests.Tokenization;
using Microsoft.Extensions.AI;

namespace KvIlgpu.Tests.Chat;

/// <summary>The Microsoft.Extensions.AI chat client over a small random model: its replies are the engine's own greedy
/// generations of the rendered conversation, streamed or not, with usage, finish reasons and stop sequences.</summary>
public sealed class KvIlgpuChatClientTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly InferenceEngine _engine;
    private readonly IChatClient _client;
    private static readonly ChatTemplate Template = new(ChatTemplate.Family.ChatMl);

    public KvIlgpuChatClientTests()
    {
        TokenizerTests.WriteLlama2cTokenizer(_dir, out int vocab);
        TestModels.WriteLlama2c(_dir.File("model.bin"), TestModels.Random(TestModels.Config(vocab: vocab, seq: 256), seed: 9));
        _engine = InferenceEngine.Load(_dir.File("model.bin"), new EngineOptions(DeviceKind.Cpu, MaxBatchSize: 4));
        _client = new KvIlgpuChatClient(_engine, Template, "tiny");
    }

    public void Dispose()
    {
        _client.Dispose();
        _engine.Dispose();
        _dir.Dispose();
    }

    private static readonly ChatMessage[] Conversation = [new(ChatRole.System, "be kind"), new(ChatRole.User, "the cat")];

    private Task<(string Text, int Count)> Greedy(int maxTokens) => GreedyText.Of(_engine,
        _engine.Tokenizer!.Encode(Template.Render([("system", "be kind"), ("user", "the cat")]), addBos: true), maxTokens);

    [Fact]
    public async Task A_response_is_the_engines_greedy_generation_with_usage()
    {
        var (expected, count) = await Greedy(10);
        var response = await _client.GetResponseAsync(Conversation, new ChatOptions { MaxOutputTokens = 10, Temperature = 0 });
        Assert.Equal(expected, response.Text);
        Assert.Equal(ChatRole.Assistant, response.Messages[0].Role);
        Assert.Equal(count == 10 ? ChatFinishReason.Length : ChatFinishReason.Stop, response.FinishReason);
        Assert.Equal(count, response.Usage!.OutputTokenCount);
        Assert.Equal(_engine.Tokenizer!.Encode(Template.Render([("system", "be kind"), ("user", "the cat")]), addBos: true).Count,
            response.Usage.InputTokenCount);
    }

    [Fact]
    public async Task Streaming_sends_the_same_text_and_ends_with_the_finish_reason()
    {
        var (expected, _) = await Greedy(8);
        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in _client.GetStreamingResponseAsync(Conversation, new ChatOptions { MaxOutputTokens = 8, Temperature = 0 }))
            updates.Add(u);
        Assert.Equal(expected, string.Concat(updates.Select(u => u.Text)));
        Assert.NotNull(updates[^1].FinishReason);
        Assert.All(updates[..^1], u => Assert.Null(u.FinishReason));
    }

    [Fact]
    public async Task A_stop_sequence_ends_the_reply_before_it()
    {
        var (full, _) = await Greedy(24);
        string stop = full.Substring(full.Length / 2, Math.Min(3, full.Length - full.Length / 2));
        var response = await _client.GetResponseAsync(Conversation,
            new ChatOptions { MaxOutputTokens = 24, Temperature = 0, StopSequences = [stop] });
        Assert.Equal(full[..full.IndexOf(stop, StringComparison.Ordinal)], response.Text);
        Assert.Equal(ChatFinishReason.Stop, response.FinishReason);
    }

    [Fact]
    public async Task Compression_rides_in_additional_properties_and_metadata_names_the_model()
    {
        var options = new ChatOptions
        {
            MaxOutputTokens = 4, Temperature = 0,
            AdditionalProperties = new()
            {
                [KvIlgpuChatClient.CompressionKey] = KvIlgpu.Compression.CompressionOptions.ForPolicy("kvcompress",
                new KvIlgpu.Compression.EvictionBudget(MaxCacheTokens: 16, ProtectedWindow: 4))
            },
        };
        var compressed = await _client.GetResponseAsync(Conversation, options);
        Assert.NotNull(compressed.FinishReason);
        Assert.True(compressed.Usage!.OutputTokenCount > 0);
        options.AdditionalProperties[KvIlgpuChatClient.CompressionKey] = "kvcompress";
        await Assert.ThrowsAsync<ArgumentException>(() => _client.GetResponseAsync(Conversation, options));
        Assert.Equal("tiny", _client.GetService<ChatClientMetadata>()!.DefaultModelId);
        Assert.Same(_engine, _client.GetService<InferenceEngine>());
    }
}
