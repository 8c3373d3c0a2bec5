using KvIlgpu.Models;
using KvIlgpu.Models.Loading;
using KvIlgpu.Tests.Support;

namespace KvIlgpu.Tests.Projection;

/// <summary>At full rank a projection changes nothing: llama2.c's golden run and the shipped default model give the same
/// tokens with their projections as without.</summary>
[Collection("backends")]
public class FullRankProjectionTests
{
    [SharedTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void The_golden_llama2c_run_is_reproduced_through_a_full_rank_projection(string backendName)
    {
        var golden = GoldenRun.Load(SharedData.Path_("golden", "tiny-gqa.json"));
        var weights = ModelLoader.Load(SharedData.Path_("golden", "tiny-gqa.bin"));
        var c = weights.Config;
        lock (Backends.Lock)
        {
            using var model = new LlamaModel(weights, Backends.Get(backendName))
            {
                Projection = TestProjections.Random(c.Layers, c.KvHeads, c.HeadDim, seed: 1),
            };
            using var cache = model.CreateCache();
            var produced = new List<int>();
            int token = golden.Prompt[0];
            for (int pos = 0; pos < c.MaxSeqLen; pos++)
            {
                var logits = model.Forward(cache, [token]);
                if (golden.Logits.TryGetValue(pos, out var expected)) Compare.Close(logits, expected, 1e-4, $"logits at position {pos}");
                int next = pos + 1 < golden.Prompt.Length ? golden.Prompt[pos + 1] : Array.IndexOf(logits, logits.Max());
                produced.Add(next);
                token = next;
            }
            Assert.Equal(golden.Tokens, produced);
        }
    }

    [Fact]
    public void The_default_model_generates_the_same_tokens_through_its_shipped_pca_projection_at_full_rank()
    {
        var root = new DirectoryInfo(AppContext.BaseDirectory);
        while (!File.Exists(Path.Combine(root.FullName, "KvIlgpu.sln"))) root = root.Parent!;
        string pca = Path.Combine(root.FullName, "weights", "default", "kv-projection-pca.safetensors");
        string[] args = ["generate", "--prompt", "The jury said that", "--max-tokens", "24", "--temperature", "0", "--json"];
        var plain = CliRunner.Run(args);
        var projected = CliRunner.Run([.. args, "--kv-projection", pca, "--kv-ranks", "1"]);
        Assert.True(plain.ExitCode == 0 && projected.ExitCode == 0, plain.Stderr + projected.Stderr);
        Assert.Equal(TokenIds(plain.Stdout), TokenIds(projected.Stdout));
        // And at half the dims the same file does change what is generated (so the flag is not ignored).
        var half = CliRunner.Run([.. args, "--kv-projection", pca, "--kv-ranks", "1/2"]);
        Assert.NotEqual(TokenIds(plain.Stdout), TokenIds(half.Stdout));
    }

    private static List<int> TokenIds(string json) =>
        [.. System.Text.Json.JsonDocument.Parse(json).RootElement.GetProperty("token_ids").EnumerateArray().Select(t => t.GetInt32())];
}
