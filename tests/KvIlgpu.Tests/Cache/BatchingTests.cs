using System.Text.Json;
using KvIlgpu.Compute;
using KvIlgpu.Engine;
using KvIlgpu.Models;
using KvIlgpu.Tests.Support;

namespace KvIlgpu.Tests.Cache;

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
        using (var engine = InferenceEngine.FromWeights(w, new EngineOptions(DeviceKind.Cpu, KvMemoryBytes: 8 << 20, MaxBatchSize: 1, MaxTokensPerStep: 64)))
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
            Assert.True(alone[r.Id].SequenceEqual(results[r.Id]), $"{r.Id}: alone [{string.Join(",", alone[r.Id])}] vs batched; output: {stdout}");
        }
    }

    [Fact]
    public async Task Requests_submitted_from_many_threads_each_stream_their_own_tokens()
    {
        var (w, requests) = Workload();
        using var engine = InferenceEngine.FromWeights(w, new EngineOptions(DeviceKind.Cpu, KvMemoryBytes: 8 << 20, MaxBatchSize: 8, MaxTokensPerStep: 64));
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
        await foreach (var t in engine.GenerateAsync(golden.Prompt, new GenerationOptions(1000, SamplingOptions.Greedy))) ids.Add(t.Id);
        Assert.Equal(golden.Tokens[2..255], ids);
        Assert.Equal("context_full", engine.LastResult!.StopReason);
    }
}
