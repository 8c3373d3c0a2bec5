using System.Text.Json;
using KvIlgpu.Tests.Support;

namespace KvIlgpu.Tests.Cli;

public class DefaultModelTests
{
    /// <summary>The README's main command: generate with no --model runs the shipped default model and writes text.</summary>
    [Fact]
    public void Generate_without_a_model_runs_the_shipped_default_model()
    {
        var (code, stdout, stderr) = CliRunner.Run("generate", "--prompt", "The jury said that", "--max-tokens", "12", "--temperature", "0", "--json");
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
}
