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
}
