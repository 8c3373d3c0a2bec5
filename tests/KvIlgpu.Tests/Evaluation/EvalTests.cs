using System.Text.Json;
using KvIlgpu.Tests.Support;
using KvIlgpu.Tests.Tokenization;

namespace KvIlgpu.Tests.Evaluation;

public class EvalTests
{
    [Theory]
    [InlineData("kvcompress:cubed", "cubed")]
    [InlineData("nope:squared", "nope")]
    public void Eval_names_a_bad_policy_spec(string spec, string named)
    {
        using var dir = new TempDir();
        TestModels.WriteLlama2c(dir.File("model.bin"), TestModels.Random(TestModels.Config(vocab: 64, seq: 64), seed: 3));
        File.WriteAllText(dir.File("corpus.ids"), string.Join(",", Enumerable.Range(0, 100).Select(i => 3 + i % 60)));
        var (code, _, stderr) = CliRunner.Run("eval", "--model", dir.File("model.bin"), "--corpus", dir.File("corpus.ids"), "--policies",
            "kvcompress," + spec);
        Assert.NotEqual(0, code);
        Assert.Contains("--policies", stderr);
        Assert.Contains(named, stderr);
    }

    [Theory]
    [InlineData("32", "1/4", 1024, 256, 32)]    // a fixed window
    [InlineData("1/2", "1/4", 1024, 256, 128)]  // half of each budget
    [InlineData("1/2", "1/32", 1024, 32, 16)]
    [InlineData("1/4", "100", 1024, 100, 25)]
    [InlineData("3/4", "1/8", 1024, 128, 96)]   // three quarters of each budget
    [InlineData("7/8", "1/32", 512, 16, 14)]
    public void A_protected_window_is_a_token_count_or_a_share_of_each_budget(string window, string budget, int length, int tokens,
        int protectedTokens)
    {
        var (fixedTokens, share) = KvIlgpu.Evaluation.EvaluationOptions.ParseProtectedWindow(window);
        var b = new KvIlgpu.Evaluation.EvaluationOptions(["kvcompress"], [budget], ProtectedWindow: fixedTokens, ProtectedShare: share,
            Sinks: 2).Budget(budget, length);
        Assert.Equal(tokens, b.MaxCacheTokens);
        Assert.Equal(protectedTokens, b.ProtectedWindow);
        Assert.Equal(2, b.Sinks);
    }

    [Theory]
    [InlineData("1/32", 1024, 32)]
    [InlineData("1/3", 999, 333)]      // the division is exact, not 999 times a rounded third
    [InlineData("1/2.5", 100, 40)]
    [InlineData("100", 1024, 100)]
    [InlineData("1/4096", 1024, 1)]    // never below one token
    public void A_budget_is_one_nth_of_the_sequence_or_a_token_count(string budget, int length, int tokens) =>
        Assert.Equal(tokens, KvIlgpu.Evaluation.EvaluationOptions.BudgetTokens(budget, length));

    [Theory]
    [InlineData("3/4")]    // budgets are 1/N; shares P/Q are for the protected window
    [InlineData("1/0.5")]
    [InlineData("0")]
    [InlineData("quarter")]
    public void A_bad_budget_names_the_option(string budget) =>
        Assert.Contains("Budgets", Assert.Throws<InvalidOptionException>(() => KvIlgpu.Evaluation.EvaluationOptions.BudgetTokens(budget,
            1024)).Message);

    [Fact]
    public void By_default_a_quarter_of_each_budget_is_protected()
    {
        var b = new KvIlgpu.Evaluation.EvaluationOptions(["kvcompress"], ["1/8"]).Budget("1/8", 1024);
        Assert.Equal(128, b.MaxCacheTokens);
        Assert.Equal(32, b.ProtectedWindow);
    }

    [Theory]
    [InlineData("1/0")]
    [InlineData("-3")]
    [InlineData("half")]
    [InlineData("5/4")]   // more than the whole budget
    [InlineData("1/2/3")]
    public void A_bad_protected_window_names_the_option(string window) =>
        Assert.Contains("ProtectedWindow", Assert.Throws<InvalidOptionException>(() =>
            KvIlgpu.Evaluation.EvaluationOptions.ParseProtectedWindow(window)).Message);

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
            "--protected-window", "8", "--kv-sinks", "2", "--passkey-trials", "1", "--device", "cpu", "--json", "--out", dir.File("out"));
        Assert.True(code == 0, stderr);
        var rows = JsonDocument.Parse(stdout).RootElement.EnumerateArray().ToList();
        Assert.Equal(1 + 3 * 2, rows.Count);
        // Progress counts the 2 segments and the 2 retrieval tasks of all 7 rows, and ends on the last.
        Assert.Contains("evaluating 1/28", stderr);
        Assert.Contains("multi-key needle 28/28", stderr);
        var full = rows[0];
        Assert.Equal("full", full.GetProperty("policy").GetString());
        Assert.Equal(0, full.GetProperty("kl_to_full").GetDouble(), 9);
        Assert.Equal(1, full.GetProperty("top1_agreement").GetDouble());
        // Predicting token n, the full cache holds ceil(n/16) blocks for each of the 2 x 2 (layer, KV head) pairs, each of
        // 2 x 16 x 12 floats plus 16 positions and metrics: the mean over tokens 24..95 of each segment in closed form.
        // The peak is the whole 96-token segment: 6 blocks per pair.
        const long blockBytes = 2 * 16 * 12 * 4 + 16 * 8;
        long fullMean = (long)Enumerable.Range(24, 72).Average(n => 4 * Math.Ceiling(n / 16.0) * blockBytes);
        Assert.Equal(fullMean, full.GetProperty("mean_kv_bytes").GetInt64());
        Assert.Equal(4 * 6 * blockBytes, full.GetProperty("peak_kv_bytes").GetInt64());
        // Where the budget went: predicting token n, the full cache holds n KVs in every head of both layers.
        var fullKept = full.GetProperty("kept_per_layer").EnumerateArray().Select(k => k.GetDouble()).ToList();
        Assert.Equal([59.5, 59.5], fullKept);
        // Compressed every step to its budget (48 tokens for 1/2 of 96, or 16), a head holds min(n, budget) KVs: the
        // fixed-per-head policies in every layer, KV-Compress on average over its layers, to within one block.
        foreach (var r in rows.Skip(1))
        {
            int budget = r.GetProperty("budget").GetString() == "1/2" ? 48 : 16;
            double expected = Enumerable.Range(24, 72).Average(n => Math.Min(n, budget));
            var kept = r.GetProperty("kept_per_layer").EnumerateArray().Select(k => k.GetDouble()).ToList();
            Assert.Equal(2, kept.Count);
            if (r.GetProperty("policy").GetString() == "kvcompress") Assert.InRange(kept.Average(), expected - 16, expected + 16);
            else Assert.All(kept, k => Assert.Equal(expected, k, 9));
        }
        foreach (var r in rows.Skip(1))
        {
            Assert.True(r.GetProperty("compression_ratio").GetDouble() > 1.3, r.ToString());
            Assert.True(r.GetProperty("kl_to_full").GetDouble() > 0, r.ToString());
            Assert.True(r.GetProperty("peak_kv_bytes").GetInt64() < full.GetProperty("peak_kv_bytes").GetInt64(), r.ToString() + " vs full "
                + full.ToString());
            Assert.True(r.GetProperty("mean_kv_bytes").GetInt64() < fullMean, r.ToString());
            // An untrained random model retrieves no key at any budget: a harness that counted unrelated output as a hit
            // (or skipped the prompts) would show here. The shipped model's retrieval is tested in DefaultModelTests.
            Assert.Equal(0, r.GetProperty("passkey_accuracy").GetDouble());
            Assert.Equal(0, r.GetProperty("needle_accuracy").GetDouble());
        }
        // Tighter budgets compress more.
        var kv = rows.Where(r => r.GetProperty("policy").GetString() == "kvcompress").ToList();
        Assert.True(kv[1].GetProperty("compression_ratio").GetDouble() > kv[0].GetProperty("compression_ratio").GetDouble());
        Assert.Contains("| kvcompress | 1/2 |", File.ReadAllText(Path.Combine(dir.File("out"), "results.md")));
        var csv = File.ReadAllLines(Path.Combine(dir.File("out"), "results.csv"));
        Assert.Equal(8, csv.Length);
        Assert.EndsWith(",kept_per_layer,projection,dim_budget,kv_bytes_fraction,kv_dtype", csv[0]);
        Assert.EndsWith(",59.5;59.5,none,1,1,f32", csv[1]);
        foreach (var plot in new[] { "kl-vs-compression.svg", "passkey-vs-compression.svg", "needle-vs-compression.svg" })
            System.Xml.Linq.XDocument.Load(Path.Combine(dir.File("out"), plot));
    }

    /// <summary>The storage axis: the full cache in f16 and q8 against the f32 reference, their mean bytes the f32 cache's
    /// times the ratio of their slots (same blocks, narrower slots), their KL small but for q8 not zero.</summary>
    [Fact]
    public void Eval_compares_storage_types_against_the_f32_full_cache()
    {
        using var dir = new TempDir();
        var tokPath = TokenizerTests.WriteLlama2cTokenizer(dir, out int vocab);
        TestModels.WriteLlama2c(dir.File("model.bin"), TestModels.Random(TestModels.Config(vocab: vocab, seq: 128), seed: 41));
        var rng = new Random(3);
        File.WriteAllText(dir.File("corpus.ids"), string.Join(",", Enumerable.Range(0, 300).Select(_ => rng.Next(3, vocab))));
        var (code, stdout, stderr) = CliRunner.Run("eval", "--model", dir.File("model.bin"), "--corpus", dir.File("corpus.ids"),
            "--segment-length", "96", "--segments", "2", "--policies", "full", "--budgets", "1/2", "--kv-dtypes", "f16,q8",
            "--device", "cpu", "--json", "--out", dir.File("out"));
        Assert.True(code == 0, stderr);
        var rows = JsonDocument.Parse(stdout).RootElement.EnumerateArray().ToList();
        Assert.Equal(["f32", "f16", "q8"], rows.Select(r => r.GetProperty("storage").GetString()));
        Assert.Equal(0, rows[0].GetProperty("kl_to_full").GetDouble(), 9);
        // Head dim 12: f32 slots 2 x 12 x 4 + 8 bytes, f16 (6 + 6) x 4 + 8, q8 (3 + 3) x 4 + 8 + 8 (the scales).
        long full = rows[0].GetProperty("mean_kv_bytes").GetInt64();
        Assert.Equal(full * 56 / 104, rows[1].GetProperty("mean_kv_bytes").GetInt64());
        Assert.Equal(full * 40 / 104, rows[2].GetProperty("mean_kv_bytes").GetInt64());
        Assert.True(Math.Abs(40 / 104.0 - rows[2].GetProperty("kv_bytes_fraction").GetDouble()) < 1e-4); // means are whole bytes
        Assert.InRange(rows[1].GetProperty("kl_to_full").GetDouble(), 0, 1e-3);
        Assert.InRange(rows[2].GetProperty("kl_to_full").GetDouble(), 1e-9, 1e-2);
        Assert.Contains("| q8 | none |", File.ReadAllText(Path.Combine(dir.File("out"), "results.md")));
    }

    [Fact]
    public void A_plot_reference_line_sits_between_the_points_above_and_below_it()
    {
        using var dir = new TempDir();
        var series = new Dictionary<string, IReadOnlyList<(double X, double Y)>> { ["a"] = [(2, 0.5), (4, 1.5)] };
        KvIlgpu.Evaluation.SvgPlot.Write(dir.File("plot.svg"), "t", "x", "y", series, referenceY: 1);
        var svg = System.Xml.Linq.XDocument.Load(dir.File("plot.svg"));
        System.Xml.Linq.XNamespace ns = "http://www.w3.org/2000/svg";
        var dashed = svg.Descendants(ns + "line").Single(l => l.Attribute("stroke-dasharray") != null);
        var cy = svg.Descendants(ns + "circle").Select(c => double.Parse(c.Attribute("cy")!.Value,
            System.Globalization.CultureInfo.InvariantCulture)).ToList();
        double y = double.Parse(dashed.Attribute("y1")!.Value, System.Globalization.CultureInfo.InvariantCulture);
        // SVG y grows downwards: the point at 0.5 is below the line, the one at 1.5 above, and 1 is halfway between.
        Assert.Equal((cy[0] + cy[1]) / 2, y, 1);
        Assert.True(cy[0] > y && y > cy[1]);
    }

    [Fact]
    public void Segments_zero_runs_the_retrieval_tasks_alone_without_a_corpus()
    {
        using var dir = new TempDir();
        TokenizerTests.WriteLlama2cTokenizer(dir, out int vocab);
        TestModels.WriteLlama2c(dir.File("model.bin"), TestModels.Random(TestModels.Config(vocab: vocab, seq: 128), seed: 41));
        var (code, stdout, stderr) = CliRunner.Run("eval", "--model", dir.File("model.bin"), "--segments", "0", "--passkey-trials", "2",
            "--policies", "streamingllm", "--budgets", "1/2,16", "--device", "cpu", "--json", "--out", dir.File("out"));
        Assert.True(code == 0, stderr);
        var rows = JsonDocument.Parse(stdout).RootElement.EnumerateArray().ToList();
        Assert.Equal(3, rows.Count);
        foreach (var r in rows)
        {
            foreach (var corpusColumn in new[]
                { "perplexity", "kl_to_full", "top1_agreement", "mean_kv_bytes", "peak_kv_bytes", "kept_per_layer" })
                Assert.Equal(JsonValueKind.Null, r.GetProperty(corpusColumn).ValueKind);
            Assert.Equal(0, r.GetProperty("passkey_accuracy").GetDouble()); // an untrained random model retrieves nothing
            Assert.Equal(0, r.GetProperty("needle_accuracy").GetDouble());
        }
        // The compression ratio comes from the retrieval prompts: 1 for the full cache, more for half of each prompt,
        // more again for 16 tokens of prompts of 64 or more.
        Assert.Equal(1, rows[0].GetProperty("compression_ratio").GetDouble());
        Assert.InRange(rows[1].GetProperty("compression_ratio").GetDouble(), 1.5, 2.5);
        Assert.True(rows[2].GetProperty("compression_ratio").GetDouble() > rows[1].GetProperty("compression_ratio").GetDouble() + 1);
        Assert.Contains("| full | - | 1.00x | - | - | - |", File.ReadAllText(Path.Combine(dir.File("out"), "results.md")));
        Assert.False(File.Exists(Path.Combine(dir.File("out"), "kl-vs-compression.svg"))); // nothing to plot
        System.Xml.Linq.XDocument.Load(Path.Combine(dir.File("out"), "passkey-vs-compression.svg"));
    }

    [Fact]
    public void Segments_zero_without_retrieval_and_no_corpus_with_segments_name_their_options()
    {
        using var dir = new TempDir();
        TokenizerTests.WriteLlama2cTokenizer(dir, out int vocab);
        TestModels.WriteLlama2c(dir.File("model.bin"), TestModels.Random(TestModels.Config(vocab: vocab, seq: 64), seed: 3));
        var (code, _, stderr) = CliRunner.Run("eval", "--model", dir.File("model.bin"), "--segments", "0", "--device", "cpu");
        Assert.NotEqual(0, code);
        Assert.Contains("--segments", stderr);
        (code, _, stderr) = CliRunner.Run("eval", "--model", dir.File("model.bin"), "--passkey-trials", "1", "--device", "cpu");
        Assert.NotEqual(0, code);
        Assert.Contains("--corpus", stderr);
    }

    [Fact]
    public void Prompt_share_sets_how_much_of_each_segment_is_prefilled_before_the_scored_decode()
    {
        using var dir = new TempDir();
        TestModels.WriteLlama2c(dir.File("model.bin"), TestModels.Random(TestModels.Config(vocab: 64, seq: 128), seed: 41));
        File.WriteAllText(dir.File("corpus.ids"), string.Join(",", Enumerable.Range(0, 200).Select(i => 3 + i * 7 % 60)));
        var (code, stdout, stderr) = CliRunner.Run("eval", "--model", dir.File("model.bin"), "--corpus", dir.File("corpus.ids"),
            "--segment-length", "96", "--segments", "1", "--policies", "streamingllm", "--budgets", "1/2", "--prompt-share", "0.75",
            "--device", "cpu", "--json");
        Assert.True(code == 0, stderr);
        // Three quarters of 96 tokens are the prompt, so tokens 72..95 are predicted, each with ceil(n/16) full-cache
        // blocks for each of the 2 x 2 (layer, KV head) pairs.
        const long blockBytes = 2 * 16 * 12 * 4 + 16 * 8;
        long fullMean = (long)Enumerable.Range(72, 24).Average(n => 4 * Math.Ceiling(n / 16.0) * blockBytes);
        Assert.Equal(fullMean, JsonDocument.Parse(stdout).RootElement[0].GetProperty("mean_kv_bytes").GetInt64());
    }

    [Theory]
    [InlineData("0")]
    [InlineData("1")]
    [InlineData("1.5")]
    public void A_prompt_share_outside_zero_to_one_names_the_option(string share)
    {
        using var dir = new TempDir();
        TestModels.WriteLlama2c(dir.File("model.bin"), TestModels.Random(TestModels.Config(vocab: 64, seq: 64), seed: 3));
        File.WriteAllText(dir.File("corpus.ids"), string.Join(",", Enumerable.Range(0, 100).Select(i => 3 + i % 60)));
        var (code, _, stderr) = CliRunner.Run("eval", "--model", dir.File("model.bin"), "--corpus", dir.File("corpus.ids"),
            "--prompt-share", share);
        Assert.NotEqual(0, code);
        Assert.Contains("--prompt-share", stderr);
    }

    [Theory]
    [InlineData(0.0, 96, false)]
    [InlineData(1.0, 96, false)]
    [InlineData(0.999, 96, true)]  // a 95-token prompt and one token scored
    [InlineData(0.999, 1, false)]  // a 1-token segment cannot hold a prompt and a scored token
    public void The_library_checks_the_prompt_share_leaves_a_token_to_score(double share, int segmentLength, bool valid)
    {
        var options = new KvIlgpu.Evaluation.EvaluationOptions(["streamingllm"], ["1/2"], SegmentLength: segmentLength, Segments: 1,
            PrefixFraction: share);
        // The share is checked before the corpus, so with an empty corpus a valid share fails on the corpus instead.
        var e = Assert.ThrowsAny<ArgumentException>(() => KvIlgpu.Evaluation.Evaluator.Run(() =>
            throw new InvalidOperationException("no engine"), [], options));
        Assert.Equal(!valid, e is InvalidOptionException { Option: "PrefixFraction" } && e.Message.Contains("PrefixFraction"));
        Assert.Equal(valid, e.Message.Contains("the corpus has 0 tokens"));
    }

    [Fact]
    public void Multi_key_needle_prompts_state_every_fact_once_and_ask_for_the_one_at_the_depth()
    {
        using var dir = new TempDir();
        var path = dir.File("tokenizer.json");
        KvIlgpu.Tokenization.ByteLevelBpeTrainer.Save(KvIlgpu.Tokenization.ByteLevelBpeTrainer.Train(
            ["The grass is green. The sky is blue. The value of the key is 1234. What is the value?"], 60, ["<|bos|>"]), path);
        var tok = new KvIlgpu.Tokenization.ByteLevelBpeTextTokenizer(path);
        var rng = new Random(5);
        foreach (var (length, depth) in new[] { (200, 0.1), (400, 0.5), (300, 0.9) })
        {
            var (prompt, answer) = KvIlgpu.Evaluation.Passkey.MultiKeyNeedle(tok, length, depth, rng);
            var text = tok.Decode(prompt);
            Assert.InRange(prompt.Count, length - 4, length + 4);
            var facts = System.Text.RegularExpressions.Regex.Matches(text, @"The value of ([a-z]{6}) is (\d{4})\.");
            Assert.Equal(4, facts.Count);
            var asked = System.Text.RegularExpressions.Regex.Match(text, @"What is the value of ([a-z]{6})\? The value of \1 is$");
            Assert.True(asked.Success, text[^80..]);
            var fact = facts.Single(f => f.Groups[1].Value == asked.Groups[1].Value);
            Assert.Equal(answer, fact.Groups[2].Value);
            // Depth is measured in filler; the other facts and the question shift it a little in the whole text.
            Assert.InRange(fact.Index / (double)text.Length, depth - 0.2, depth + 0.2);
        }
    }
}
