using System.Text.RegularExpressions;
using KvIlgpu.Tests.Support;

namespace KvIlgpu.Tests.Samples;

/// <summary>The README's C# snippets are the samples project's code, and that code runs: a snippet that drifts from
/// the library fails the build, one that drifts from the sample fails here.</summary>
public partial class SamplesTests
{
    private static readonly string Root = FindRoot();

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "KvIlgpu.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException("the repository root (KvIlgpu.sln) is not above the test binaries");
    }

    [GeneratedRegex(@"```csharp\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex CSharpBlock();

    [GeneratedRegex(@"// <readme>\n(.*?)// </readme>", RegexOptions.Singleline)]
    private static partial Regex ReadmeRegion();

    [Fact]
    public void Every_csharp_snippet_of_the_readme_is_a_samples_region()
    {
        var readme = File.ReadAllText(Path.Combine(Root, "README.md")).ReplaceLineEndings("\n");
        var regions = Directory.GetFiles(Path.Combine(Root, "samples"), "*.cs", SearchOption.AllDirectories)
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal))
            .SelectMany(f => ReadmeRegion().Matches(File.ReadAllText(f).ReplaceLineEndings("\n")).Select(m => m.Groups[1].Value))
            .ToList();
        var snippets = CSharpBlock().Matches(readme).Select(m => m.Groups[1].Value).ToList();
        Assert.NotEmpty(snippets);
        foreach (var snippet in snippets)
            Assert.True(regions.Contains(snippet), $"this README snippet is in no samples region:\n{snippet}");
    }

    /// <summary>The library example runs from the repository root on the shipped default model: it streams text,
    /// compresses the cache with KV-Compress (so KVs are evicted) and reports its own KV usage.</summary>
    [Fact]
    public void The_library_example_runs_on_the_default_model()
    {
        var (code, stdout, stderr) = CliRunner.RunProgram("KvIlgpu.Samples.dll", Root);
        Assert.True(code == 0, stderr + stdout);
        Assert.Matches(@"\n48 tokens \(max_tokens\), [0-9.]+ tok/s on ", stdout);
        var kv = Regex.Match(stdout, @"KV cache: ([0-9,]+) bytes at peak, ([0-9,]+) on average, ([0-9,]+) KVs evicted");
        Assert.True(kv.Success, stdout);
        long Number(int group) => long.Parse(kv.Groups[group].Value.Replace(",", "", StringComparison.Ordinal));
        Assert.True(Number(3) > 0, "a 32-token budget on a 52-token sequence evicts");
        Assert.True(Number(2) <= Number(1), "the mean cannot exceed the peak");
    }

    /// <summary>The IChatClient example runs on the shipped default model and prints a reply with its token count.</summary>
    [Fact]
    public void The_chat_client_example_runs_on_the_default_model()
    {
        var (code, stdout, stderr) = CliRunner.RunProgram("KvIlgpu.ChatSample.dll", Root);
        Assert.True(code == 0, stderr + stdout);
        Assert.Matches(@"\[[0-9]+ tokens, (stop|length)\]", stdout);
    }

    /// <summary>The OpenAI SDK example talks to a kvilgpu server on the shipped default model (started here in-process on a
    /// free port, as `kvilgpu serve` runs it) and prints the reply with its token count.</summary>
    [Fact]
    public async Task The_openai_sdk_example_runs_against_the_server()
    {
        string model = Path.Combine(Root, "weights", "default");
        using var engine = KvIlgpu.Engine.InferenceEngine.Load(model, new KvIlgpu.Engine.EngineOptions(KvIlgpu.Compute.DeviceKind.Cpu));
        await using var app = KvIlgpu.Cli.Serve.OpenAiServer.Build(engine, new KvIlgpu.Cli.Serve.ServeOptions("default", null, 64,
            1 << 20, _ => null, KvIlgpu.Chat.ChatTemplate.ForModel(model)), "http://127.0.0.1:0");
        await app.StartAsync();
        var environment = new Dictionary<string, string> { ["OPENAI_BASE_URL"] = app.Urls.First() + "/v1" };
        // Run from its own build folder (same configuration as these tests): the SDK's dependencies are there.
        var config = new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name;
        string dll = Path.Combine(Root, "samples", "KvIlgpu.OpenAiClientSample", "bin", config, "net10.0",
            "KvIlgpu.OpenAiClientSample.dll");
        var (code, stdout, stderr) = await Task.Run(() => CliRunner.RunProgram(dll, Root, environment));
        Assert.True(code == 0, stderr + stdout);
        Assert.Matches(@"\[32 tokens, (Stop|Length)\]|\[[0-9]+ tokens, Stop\]", stdout);
    }
}
