using System.Text.Json;
using KvIlgpu.Compute;
using KvIlgpu.Engine;
using KvIlgpu.Models;
using KvIlgpu.Tests.Support;

namespace KvIlgpu.Tests.Engine;

public class BatchingTests
{
    private static (LlamaWeights Weights, List<(string Id, int[] Prompt, int MaxTokens, float Temperature, int Seed)> Requests) Workload()
    {
        var w = TestModels.Random(TestModels.Config(vocab: 64, seq: 96), seed: 31);
        var rng = new Random(7);
        var requests = Enumerable.Range(0, 16).Select(i => (
            Id: $"r{i}",
            Prompt: Enumerable.Range(0, rng.Next(3, 30)).Select(_ => rng.Next(3, 64)).ToArray(),
            MaxTokens: rng.Next(10, 50),
            Temperature: i % 2 == 0 ? 0f : 0.9f, // half greedy, half seeded sampling
            Seed: i)).ToList();
        return (w, requests);
    }

    private static GenerationOptions Options(int maxTokens, float temperature, int seed) =>
        new(maxTokens, new SamplingOptions(temperature, Seed: seed));

    /// <summary>16 requests run together through `kvilgpu batch` with a KV memory so small that preemption happens give,
    /// token for token, what each gives run alone.</summary>
    [Fact]
    public async Task Batch_under_memory_pressure_matches_each_request_run_alone_and_really_preempts()
    {
        var (w, requests) = Workload();
        using var dir = new TempDir();
        TestModels.WriteLlama2c(dir.File("m.bin"), w);
        File.WriteAllLines(dir.File("requests.jsonl"), requests.Select(r => JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["id"] = r.Id, ["prompt_ids"] = r.Prompt, ["max_tokens"] = r.MaxTokens, ["temperature"] = r.Temperature, ["seed"] = r.Seed,
        })));

        // Alone: one request at a time with plenty of memory.
        var alone = new Dictionary<string, int[]>();
        using (var engine = InferenceEngine.FromWeights(w, new EngineOptions(DeviceKind.Cpu, KvMemoryBytes: 8 << 20, MaxBatchSize: 1,
            MaxTokensPerStep: 64)))
            foreach (var r in requests)
            {
                var ids = new List<int>();
                await foreach (var t in engine.GenerateAsync(r.Prompt, Options(r.MaxTokens, r.Temperature, r.Seed))) ids.Add(t.Id);
                alone[r.Id] = [.. ids];
            }

        // Together: 40 KB holds 46 blocks of 8 tokens (832 bytes each, after 1,664 bytes of block tables), while a sequence
        // of 80 tokens needs 40: sequences take turns, and some are preempted when decode growth needs a block.
        var (code, stdout, stderr) = CliRunner.Run("batch", "--model", dir.File("m.bin"), "--requests", dir.File("requests.jsonl"),
            "--kv-memory", "40000", "--block-size", "8", "--max-batch", "8", "--max-tokens-per-step", "32", "--device", "cpu", "--json");
        Assert.True(code == 0, stderr + stdout);
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        var summary = lines.Single(l => l.TryGetProperty("summary", out _)).GetProperty("summary");
        Assert.True(summary.GetProperty("preemptions").GetInt64() > 0, $"no preemption happened: {summary}");
        Assert.True(summary.GetProperty("max_batch_size").GetInt32() > 1, $"requests never ran together: {summary}");
        Assert.True(summary.GetProperty("peak_kv_bytes").GetInt64() <= 40000);
        var results = lines.Where(l => l.TryGetProperty("token_ids", out _)).ToDictionary(l => l.GetProperty("id").GetString()!,
            l => l.GetProperty("token_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray());
        Assert.Equal(16, results.Count);
        foreach (var r in requests)
        {
            Assert.True(alone[r.Id].SequenceEqual(results[r.Id]),
                $"{r.Id}: alone [{string.Join(",", alone[r.Id])}] vs batched; output: {stdout}");
        }
    }

    /// <summary>Every policy and every metric variant in one `kvilgpu batch` file: each request gets exactly the tokens and
    /// the evicted-KV count of its solo run, so no request's metric mode (plain or squared, summed or averaged) leaks
    /// into another's in a shared step. Memory is ample, so nothing is preempted and every run compresses the same way.</summary>
    [Fact]
    public async Task Batch_mixing_every_policy_and_metric_matches_each_request_run_alone()
    {
        var w = TestModels.Random(TestModels.Config(vocab: 64, seq: 96), seed: 31);
        var rng = new Random(11);
        string?[] metrics = [null, "squared", "plain", "squared-average", "plain-average"];
        var requests = KvIlgpu.Compression.CompressionOptions.Policies.Where(p => p != "full")
            .SelectMany(p => metrics.Select(m => (Policy: p, Metric: m)))
            .Prepend((Policy: "full", Metric: (string?)null))
            .Select((x, i) => (Id: $"r{i}", x.Policy, x.Metric, Prompt: Enumerable.Range(0, rng.Next(30, 60)).Select(_ => rng.Next(3,
                64)).ToArray(),
                MaxTokens: rng.Next(12, 30)))
            .ToList();
        using var dir = new TempDir();
        TestModels.WriteLlama2c(dir.File("m.bin"), w);
        File.WriteAllLines(dir.File("requests.jsonl"), requests.Select(r =>
        {
            var line = new Dictionary<string, object>
            {
                ["id"] = r.Id, ["prompt_ids"] = r.Prompt, ["max_tokens"] = r.MaxTokens,
                ["kv_policy"] = r.Policy
            };
            if (r.Policy != "full") { line["kv_budget"] = 10; line["protected_window"] = 4; }
            if (r.Metric != null) line["kv_metric"] = r.Metric;
            return JsonSerializer.Serialize(line);
        }));

        var alone = new Dictionary<string, (int[] Tokens, long Evicted, long PeakBytes, double MeanBytes)>();
        using (var engine = InferenceEngine.FromWeights(w, new EngineOptions(DeviceKind.Cpu, KvMemoryBytes: 8 << 20, MaxBatchSize: 1,
            MaxTokensPerStep: 64)))
            foreach (var r in requests)
            {
                var (squared, average) = KvIlgpu.Compression.CompressionOptions.ParseMetric(r.Metric);
                var compression = r.Policy == "full" ? null
                    : new KvIlgpu.Compression.CompressionOptions(new KvIlgpu.Compression.EvictionBudget(10, ProtectedWindow: 4), r.Policy,
                        Squared: squared, Average: average);
                var result = await engine.Submit(r.Prompt, new GenerationOptions(r.MaxTokens, SamplingOptions.Greedy,
                    Compression: compression)).Completion;
                alone[r.Id] = ([.. result.TokenIds], result.EvictedKvs, result.KvUsage.PeakBytes, result.KvUsage.MeanBytes);
            }
        Assert.Contains(alone.Values, a => a.Evicted > 0);

        var (code, stdout, stderr) = CliRunner.Run("batch", "--model", dir.File("m.bin"), "--requests", dir.File("requests.jsonl"),
            "--kv-memory", (8 << 20).ToString(System.Globalization.CultureInfo.InvariantCulture), "--max-batch", "64",
                "--max-tokens-per-step", "256",
            "--device", "cpu", "--json");
        Assert.True(code == 0, stderr + stdout);
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        var summary = lines.Single(l => l.TryGetProperty("summary", out _)).GetProperty("summary");
        Assert.Equal(0, summary.GetProperty("preemptions").GetInt64());
        Assert.True(summary.GetProperty("max_batch_size").GetInt32() >= requests.Count / 2, $"requests did not run together: {summary}");
        var results = lines.Where(l => l.TryGetProperty("token_ids", out _)).ToDictionary(l => l.GetProperty("id").GetString()!, l => l);
        Assert.Equal(requests.Count, results.Count);
        foreach (var r in requests)
        {
            var got = results[r.Id];
            var tokens = got.GetProperty("token_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            string what = $"{r.Id} ({r.Policy}:{r.Metric ?? "default"})";
            Assert.True(alone[r.Id].Tokens.SequenceEqual(tokens),
                $"{what}: alone [{string.Join(",", alone[r.Id].Tokens)}] vs batched [{string.Join(",", tokens)}]");
            Assert.True(alone[r.Id].Evicted == got.GetProperty("evicted_kvs").GetInt64(),
                $"{what}: evicted {alone[r.Id].Evicted} alone, {got.GetProperty("evicted_kvs")} batched");
            // Each request's own KV usage, not the pool's: the same as alone although dozens ran beside it.
            Assert.Equal(alone[r.Id].PeakBytes, got.GetProperty("peak_kv_bytes").GetInt64());
            Assert.Equal(alone[r.Id].MeanBytes, got.GetProperty("mean_kv_bytes").GetDouble(), 6);
        }
    }

    [Fact]
    public async Task Requests_submitted_from_many_threads_each_stream_their_own_tokens()
    {
        var (w, requests) = Workload();
        using var engine = InferenceEngine.FromWeights(w, new EngineOptions(DeviceKind.Cpu, KvMemoryBytes: 8 << 20, MaxBatchSize: 8,
            MaxTokensPerStep: 64));
        var expected = new Dictionary<string, int[]>();
        foreach (var r in requests.Take(6))
        {
            var ids = new List<int>();
            await foreach (var t in engine.GenerateAsync(r.Prompt, Options(r.MaxTokens, r.Temperature, r.Seed))) ids.Add(t.Id);
            expected[r.Id] = [.. ids];
        }
        var tasks = requests.Take(6).Select(r => Task.Run(async () =>
        {
            var ids = new List<int>();
            await foreach (var t in engine.GenerateAsync(r.Prompt, Options(r.MaxTokens, r.Temperature, r.Seed))) ids.Add(t.Id);
            return (r.Id, Ids: ids.ToArray());
        })).ToList();
        foreach (var (id, ids) in await Task.WhenAll(tasks)) Assert.Equal(expected[id], ids);
        Assert.True(engine.Stats.MaxBatchReached > 1);
        Assert.Equal(engine.Stats.BlocksTotal, engine.Stats.BlocksFree); // every block came back
        engine.Cache.CheckInvariants();
    }

    [SharedTheory]
    [InlineData(DeviceKind.Cpu)]
    [InlineData(DeviceKind.IlgpuCpu)]
    public async Task Golden_tokens_through_the_paged_path(DeviceKind device)
    {
        var golden = GoldenRun.Load(SharedData.Path_("golden", "tiny-gqa.json"));
        using var engine = InferenceEngine.FromWeights(KvIlgpu.Models.Loading.ModelLoader.Load(SharedData.Path_("golden", "tiny-gqa.bin")),
            new EngineOptions(device, KvMemoryBytes: 4 << 20, BlockSize: 16, MaxBatchSize: 4, MaxTokensPerStep: 64));
        var ids = new List<int>();
        var handle = engine.Submit(golden.Prompt, new GenerationOptions(1000, SamplingOptions.Greedy));
        await foreach (var t in handle.Tokens) ids.Add(t.Id);
        Assert.Equal(golden.Tokens[2..255], ids);
        Assert.Equal("context_full", (await handle.Completion).StopReason);
    }

    /// <summary>The golden llama2.c run through the paged path on a CUDA GPU.</summary>
    [CudaFact(needsShared: true)]
    public Task Golden_tokens_through_the_paged_path_on_cuda() => Golden_tokens_through_the_paged_path(DeviceKind.Cuda);

    /// <summary>Bad lines among good ones: each bad line (invalid JSON, not an object, no prompt, a field of the wrong type,
    /// an unknown field, a bad option value, a prompt longer than the context, ids outside the vocabulary, an option the
    /// policy cannot take) gets its own error line naming the line and the field, and every good request runs to the
    /// end with the tokens of its solo run. Some failed and some ran: exit code 2.</summary>
    [Fact]
    public async Task A_batch_with_bad_lines_finishes_every_good_request()
    {
        var w = TestModels.Random(TestModels.Config(vocab: 64, seq: 32), seed: 31);
        using var dir = new TempDir();
        TestModels.WriteLlama2c(dir.File("m.bin"), w);
        string longPrompt = string.Join(", ", Enumerable.Range(0, 40).Select(i => 3 + i % 50));
        string[] lines = [
            """{"id": "good-1", "prompt_ids": [3, 4, 5], "max_tokens": 6}""",
            """{"id": "broken", "prompt_ids": [3, 4""",
            """[1, 2, 3]""",
            """{"id": "no-prompt", "max_tokens": 4}""",
            """{"id": "typed", "prompt_ids": [3, 4], "top_p": "high"}""",
            """{"id": "typo", "prompt_ids": [3, 4], "max_token": 4}""",
            """{"id": "range", "prompt_ids": [3, 4], "temperature": -1}""",
            "",
            $$"""{"id": "long", "prompt_ids": [{{longPrompt}}]}""",
            """{"id": "vocab", "prompt_ids": [3, 999]}""",
            """{"id": "budget", "prompt_ids": [3, 4], "kv_policy": "full", "kv_budget": 8}""",
            """{"id": "good-2", "prompt_ids": [7, 8, 9, 10], "max_tokens": 5, "kv_policy": "kvcompress", "kv_budget": 4, """ +
                "\"protected_window\": 2}",
        ];
        File.WriteAllLines(dir.File("requests.jsonl"), lines);
        var (code, stdout, stderr) = CliRunner.Run("batch", "--model", dir.File("m.bin"), "--requests", dir.File("requests.jsonl"),
            "--device", "cpu", "--json");
        Assert.True(code == 2, $"exit code {code}: {stderr}{stdout}");
        Assert.DoesNotContain("   at ", stderr + stdout);
        var output = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        var errors = output.Where(l => l.TryGetProperty("error", out _))
            .ToDictionary(l => l.GetProperty("line").GetInt32(), l => l.GetProperty("error").GetString()!);
        string file = dir.File("requests.jsonl");
        var expected = new Dictionary<int, string>
        {
            [2] = $"{file}:2: not valid JSON",
            [3] = $"{file}:3: a line is one JSON object, not an array",
            [4] = $"{file}:4: give exactly one of \"prompt\" or \"prompt_ids\"",
            [5] = $"{file}:5: top_p: expected a number, got the string \"high\"",
            [6] = $"{file}:6: max_token: unknown field",
            [7] = $"{file}:7: temperature must be >= 0 and finite (got -1)",
            [9] = $"{file}:9: the prompt has 40 tokens but the model's context holds 32",
            [10] = $"{file}:10: token id 999 is outside the vocabulary",
            [11] = $"{file}:11: kv_budget or kv_keep_rate needs a kv_policy other than full",
        };
        Assert.Equal(expected.Keys.Order(), errors.Keys.Order());
        foreach (var (line, start) in expected) Assert.True(errors[line].StartsWith(start, StringComparison.Ordinal),
            $"line {line}: {errors[line]}");

        using var engine = InferenceEngine.FromWeights(w, new EngineOptions(DeviceKind.Cpu, KvMemoryBytes: 1 << 20, MaxBatchSize: 1,
            MaxTokensPerStep: 64));
        var soloGood1 = await engine.Submit([3, 4, 5], new GenerationOptions(6, SamplingOptions.Greedy)).Completion;
        var compression = new KvIlgpu.Compression.CompressionOptions(new KvIlgpu.Compression.EvictionBudget(4, ProtectedWindow: 2));
        var soloGood2 = await engine.Submit([7, 8, 9, 10], new GenerationOptions(5, SamplingOptions.Greedy,
            Compression: compression)).Completion;
        var results = output.Where(l => l.TryGetProperty("token_ids", out _)).ToDictionary(l => l.GetProperty("id").GetString()!,
            l => l.GetProperty("token_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray());
        Assert.Equal(["good-1", "good-2"], results.Keys.Order());
        Assert.Equal(soloGood1.TokenIds, results["good-1"]);
        Assert.Equal(soloGood2.TokenIds, results["good-2"]);
        var summary = output.Single(l => l.TryGetProperty("summary", out _)).GetProperty("summary");
        Assert.Equal((11, 2, 9), (summary.GetProperty("requests").GetInt32(), summary.GetProperty("finished").GetInt32(),
            summary.GetProperty("failed").GetInt32()));
    }

    /// <summary>When no line can run, the exit code is 1.</summary>
    [Fact]
    public void A_batch_where_nothing_can_run_exits_1()
    {
        using var dir = new TempDir();
        TestModels.WriteLlama2c(dir.File("m.bin"), TestModels.Random(TestModels.Config(vocab: 64, seq: 32), seed: 31));
        File.WriteAllLines(dir.File("requests.jsonl"), ["not json", """{"prompt_ids": [999]}"""]);
        var (code, stdout, stderr) = CliRunner.Run("batch", "--model", dir.File("m.bin"), "--requests", dir.File("requests.jsonl"),
            "--device", "cpu", "--json");
        Assert.True(code == 1, $"exit code {code}: {stderr}{stdout}");
        Assert.Equal(2, stdout.Split('\n').Count(l => l.Contains("\"error\"", StringComparison.Ordinal)));
    }

    /// <summary>A request whose logits turn NaN (here: its prompt holds a token whose embedding row is NaN) ends with an
    /// error naming it; a request running beside it in the same steps finishes with the tokens of its solo run.</summary>
    [Fact]
    public async Task A_request_whose_logits_become_nan_fails_alone()
    {
        var w = TestModels.Random(TestModels.Config(vocab: 64, seq: 64), seed: 31);
        w.TokenEmbedding.F32.AsSpan(7 * w.Config.Dim, w.Config.Dim).Fill(float.NaN);
        using var engine = InferenceEngine.FromWeights(w, new EngineOptions(DeviceKind.Cpu, KvMemoryBytes: 1 << 20, MaxBatchSize: 4,
            MaxTokensPerStep: 64));
        var solo = await engine.Submit([3, 4, 5, 6], new GenerationOptions(20, SamplingOptions.Greedy)).Completion;
        var poisoned = engine.Submit([3, 7, 5], new GenerationOptions(20, SamplingOptions.Greedy), "poisoned");
        var healthy = engine.Submit([3, 4, 5, 6], new GenerationOptions(20, SamplingOptions.Greedy), "healthy");
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => poisoned.Completion);
        Assert.Equal("request poisoned: the model's logits became NaN or infinite at position 3", error.Message);
        Assert.Equal(solo.TokenIds, (await healthy.Completion).TokenIds);
        Assert.Equal(engine.Stats.BlocksTotal, engine.Stats.BlocksFree);
    }
}
