using System.Text.Json;
using KvIlgpu.Models;
using KvIlgpu.Projection;
using KvIlgpu.Tests.Support;

namespace KvIlgpu.Tests.Projection;

/// <summary>kv-projection calibrate, ranks and eval's feature axis end to end on a small model, and their errors.</summary>
public class KvProjectionCommandTests
{
    private static (TempDir Dir, string Model, string Corpus) Setup()
    {
        var dir = new TempDir();
        var c = TestModels.Config(dim: 32, hidden: 48, layers: 2, heads: 4, kvHeads: 2, vocab: 64, seq: 64);
        TestModels.WriteHuggingFace(dir.Path, TestModels.Random(c, seed: 5), WeightType.F32);
        var rng = new Random(2);
        File.WriteAllText(dir.File("corpus.ids"), string.Join(" ", Enumerable.Range(0, 2000).Select(_ => rng.Next(64))));
        return (dir, dir.Path, dir.File("corpus.ids"));
    }

    [Fact]
    public void Calibrate_then_ranks_then_eval_write_projection_files_and_feature_axis_rows()
    {
        var (dir, model, corpus) = Setup();
        using var _ = dir;
        var cal = CliRunner.Run("kv-projection", "calibrate", "--model", model, "--corpus", corpus, "--tokens", "512", "--out",
            dir.File("pca.safetensors"), "--device", "cpu");
        Assert.True(cal.ExitCode == 0, cal.Stderr);
        var ranks = CliRunner.Run("kv-projection", "ranks", "--model", model, "--projection", dir.File("pca.safetensors"), "--budget",
            "1/2", "--corpus", corpus, "--prompts", "1", "--prompt-length", "32", "--out", dir.File("searched.safetensors"),
            "--device", "cpu");
        Assert.True(ranks.ExitCode == 0, ranks.Stderr);
        Assert.Equal(0.5, KvProjectionFile.Load(dir.File("searched.safetensors")).KeptFraction, 12);

        var eval = CliRunner.Run("eval", "--model", model, "--corpus", corpus, "--segments", "1", "--segment-length", "48",
            "--policies", "kvcompress", "--budgets", "1/2", "--projections",
            $"none,pca={dir.File("pca.safetensors")},searched={dir.File("searched.safetensors")}:searched", "--dim-budgets", "1,1/2",
            "--device", "cpu", "--json", "--out", dir.File("results"));
        Assert.True(eval.ExitCode == 0, eval.Stderr);
        var rows = JsonDocument.Parse(eval.Stdout).RootElement.EnumerateArray().ToList();
        // none x (full, kvcompress) + pca at 1 and 1/2 x 2 + searched x 2.
        Assert.Equal(8, rows.Count);
        var fullBytes = rows[0].GetProperty("mean_kv_bytes").GetInt64();
        // A projection's cache holds its coordinates only, so the bytes kept are measured: the blocks held, against the full
        // cache's.
        foreach (var r in rows)
            Assert.Equal(r.GetProperty("mean_kv_bytes").GetInt64() / (double)fullBytes, r.GetProperty("kv_bytes_fraction").GetDouble(), 9);
        // The full cache at half the dims holds the same blocks, each slot of d/2 key and d/2 value floats plus its
        // position and metric: (2 (d/2) 4 + 8) / (2 d 4 + 8) of the bytes.
        const int d = 8; // dim 32 over 4 heads
        var halfFull = rows.Single(r => r.GetProperty("projection").GetString() == "pca" && r.GetProperty("dim_budget").GetDouble() == 0.5
            && r.GetProperty("policy").GetString() == "full");
        Assert.True(Math.Abs((d * 4 + 8) / (8.0 * d + 8) - halfFull.GetProperty("kv_bytes_fraction").GetDouble()) < 1e-4); // whole bytes
        var pcaFull = rows.Single(r => r.GetProperty("projection").GetString() == "pca" && r.GetProperty("dim_budget").GetDouble() == 1
            && r.GetProperty("policy").GetString() == "full");
        Assert.Equal(0, pcaFull.GetProperty("kl_to_full").GetDouble(), 6); // full rank: the model unchanged
        var pcaHalf = rows.Single(r => r.GetProperty("projection").GetString() == "pca" && r.GetProperty("dim_budget").GetDouble() == 0.5
            && r.GetProperty("policy").GetString() == "full");
        Assert.True(pcaHalf.GetProperty("kl_to_full").GetDouble() > 0);
        Assert.True(File.Exists(dir.File(Path.Combine("results", "kl-vs-kv-bytes.svg"))));
    }

    public static TheoryData<string[], string> Errors => new()
    {
        { ["generate", "--prompt-ids", "1,2", "--kv-ranks", "1/2"], "--kv-ranks needs --kv-projection" },
        { ["generate", "--prompt-ids", "1,2", "--kv-projection", "/nonexistent/p.safetensors"], "--kv-projection: no such file" },
        { ["eval", "--model", "x", "--segments", "0", "--passkey-trials", "1", "--projections", "think=f"], "'think' cannot name" },
        { ["eval", "--model", "x", "--segments", "0", "--passkey-trials", "1", "--projections", "a"], "'a' is not none, NAME=FILE" },
        { ["generate", "--prompt-ids", "1,2", "--think", "2"], "--think: '2' is not a share" },
        { ["kv-projection", "ranks", "--model", "x", "--projection", "x", "--corpus", "x", "--budget", "3/2", "--out", "o"],
            "--budget: '3/2' is not a share" },
        { ["kv-projection", "ranks", "--model", "x", "--projection", "x", "--corpus", "x", "--budget", "1/2", "--keep-answers",
            "--out", "o"], "--keep-answers needs --task-prompts" },
    };

    [Theory]
    [MemberData(nameof(Errors))]
    public void Bad_projection_options_get_one_line_naming_the_option(string[] args, string expected)
    {
        var (code, _, stderr) = CliRunner.Run(args);
        Assert.Equal(1, code);
        Assert.Contains(expected, stderr);
        Assert.Single(stderr.Trim().Split('\n'));
    }

    [Fact]
    public void A_projection_for_another_model_is_refused_naming_the_file()
    {
        var (dir, model, _) = Setup();
        using var _ = dir;
        KvProjectionFile.Save(TestProjections.Random(3, 2, 8, seed: 1), dir.File("other.safetensors"));
        var (code, _, stderr) = CliRunner.Run("generate", "--model", model, "--prompt-ids", "1,2", "--max-tokens", "2", "--kv-projection",
            dir.File("other.safetensors"), "--device", "cpu");
        Assert.Equal(1, code);
        Assert.Contains("other.safetensors", stderr);
        Assert.Contains("3 layers", stderr);
    }
}
