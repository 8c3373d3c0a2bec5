using System.Text;
using KvIlgpu.Engine;

namespace KvIlgpu.Tests.Support;

/// <summary>An engine's own greedy generation of a prompt, as the text it streams and the tokens it took: the reference
/// the HTTP server and the chat client are held to.</summary>
internal static class GreedyText
{
    public static async Task<(string Text, int Count)> Of(InferenceEngine engine, IReadOnlyList<int> prompt, int maxTokens)
    {
        var sb = new StringBuilder();
        int count = 0;
        await foreach (var t in engine.GenerateAsync(prompt, new GenerationOptions(maxTokens))) { sb.Append(t.Text); count++; }
        return (sb.ToString(), count);
    }
}
