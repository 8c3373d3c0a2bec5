using System.Text.Json;
using KvIlgpu.Tests.Support;
using KvIlgpu.Tests.Tokenization;

namespace KvIlgpu.Tests.Evaluation;

public class EvalTests
{
    [Fact]
    public void Eval_compares_every_policy_and_budget_and_writes_table_csv_and_plot()
    {
        using var dir = new TempDir();
        var tokPath = TokenizerTests.WriteLlama2cTokenizer(dir, out int vocab);
        TestModels.WriteLlama2c(dir.File("model.bin"), TestModels.Random(TestModels.Config(vocab: vocab, seq: 128), seed: 41));
        var rng = new Random(2);
        File.WriteAllText(dir.File("corpus.ids"), string.Join(",", Enumerable.Range(0, 300).Select(_ => rng.Next(3, vocab))));
        var (code, stdout, stderr) = CliRunner.Run("eval", "--model", dir.File("model.bin"), "--corpus", dir.File("corpus.ids"),
            "--segment-length", "96", "--segments", "2", "--policies", "kvcompress,snapkv,streamingllm", "--budgets", "1/2,16",
            "--protected-window", "8", "--passkey-trials", "1", "--device", "cpu", "--json", "--out", dir.File("out"));
        Assert.True(code == 0, stderr);
        var rows = JsonDocument.Parse(stdout).RootElement.EnumerateArray().ToList();
        Assert.Equal(1 + 3 * 2, rows.Count);
        var full = rows[0];
        Assert.Equal("full", full.GetProperty("Policy").GetString());
        Assert.Equal(0, full.GetProperty("KlToFull").GetDouble(), 9);
        Assert.Equal(1, full.GetProperty("Top1Agreement").GetDouble());
        foreach (var r in rows.Skip(1))
        {
            Assert.True(r.GetProperty("CompressionRatio").GetDouble() > 1.3, r.ToString());
            Assert.True(r.GetProperty("KlToFull").GetDouble() > 0, r.ToString());
            Assert.True(r.GetProperty("PeakKvBytes").GetInt64() < full.GetProperty("PeakKvBytes").GetInt64(), r.ToString() + " vs full " + full.ToString());
            Assert.InRange(r.GetProperty("PasskeyAccuracy").GetDouble(), 0, 1);
        }
        // Tighter budgets compress more.
        var kv = rows.Where(r => r.GetProperty("Policy").GetString() == "kvcompress").ToList();
        Assert.True(kv[1].GetProperty("CompressionRatio").GetDouble() > kv[0].GetProperty("CompressionRatio").GetDouble());
        Assert.Contains("| kvcompress | 1/2 |", File.ReadAllText(Path.Combine(dir.File("out"), "results.md")));
        Assert.Equal(8, File.ReadAllLines(Path.Combine(dir.File("out"), "results.csv")).Length);
        System.Xml.Linq.XDocument.Load(Path.Combine(dir.File("out"), "kl-vs-compression.svg"));
    }
}
