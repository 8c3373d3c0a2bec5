using System.Diagnostics;
using KvIlgpu.Cache;
using KvIlgpu.Compression;
using KvIlgpu.Compute;
using KvIlgpu.Engine;
using KvIlgpu.Evaluation;
using KvIlgpu.Models.Loading;
using KvIlgpu.Projection;

namespace KvIlgpu.Benchmarks;

/// <summary>KV-Compress's throughput experiment on our machines: many requests with long prompts under one fixed KV
/// memory, every way of holding fewer bytes side by side: the full cache in f32, f16 and q8; a MatryoshkaKV projection at
/// half the feature dims (its cache stores the coordinates only), at the same ranks in every head and at ranks that differ
/// between heads (half the dims on average: each head's blocks hold as many tokens as fit at its own widths);
/// KV-Compress eviction at compression ratios 2..64
/// (budget = (prompt + output) / ratio tokens per head); and their compositions. Fewer bytes per sequence let the
/// scheduler decode more sequences together. Reports output tokens/s, the largest decode batch, preemptions and the
/// bytes one cached token of one head takes. The projection's bases are the identity (throughput does not depend on
/// their values; the model's weights are random too).
/// Usage: compress-throughput MODEL.bin [requests] [prompt] [output] [full-sequences-of-memory] [rows]; rows, when given,
/// runs only the rows whose cache name contains it (the first row, the full f32 cache, always runs: it is the baseline).
/// </summary>
internal static class CompressionThroughput
{
    private sealed record Setting(string Name, KvStorageType Storage, double Dims, double Ratio, bool PerHeadRanks = false);

    public static void Run(string path, int requests, int prompt, int output, int memorySequences, string? only = null)
    {
        var w = ModelLoader.Load(path);
        var c = w.Config;
        int blockSize = 16, total = prompt + output;
        // The memory: room for memorySequences uncompressed f32 sequences, the same for every row.
        var f32 = new Kernels.PagedLayout(blockSize, c.HeadDim, c.Heads, c.KvHeads, c.Layers, 1);
        long perSequence = (long)c.Layers * c.KvHeads * ((total + blockSize - 1) / blockSize) * f32.BytesPerBlock;
        long memory = perSequence * memorySequences + (1 << 20);
        Console.WriteLine($"model: {path}; {requests} requests, {prompt}-token prompts, {output} tokens out; KV memory " +
            $"{memory / 1e6:F1} MB (room for {memorySequences} uncompressed f32 sequences); protected window 8, observation " +
            $"window 8, block size {blockSize}, {Environment.ProcessorCount} cores");
        var identity = KvProjection.Identity(c.Layers, c.KvHeads, c.HeadDim);
        // Ranks that differ between heads, half the dims on average: keys at 3/4 and 1/4 of the dims in turn, values at 1/2.
        int heads = c.Layers * c.KvHeads, d = c.HeadDim;
        var perHead = identity.WithRanks([.. Enumerable.Range(0, heads).Select(i => i % 2 == 0 ? 3 * d / 4 : d / 4)],
            [.. Enumerable.Repeat(d / 2, heads)], "identity, ranks per head");
        var settings = new List<Setting>
        {
            new("full", KvStorageType.F32, 1, 1), new("full", KvStorageType.F16, 1, 1), new("full", KvStorageType.Q8, 1, 1),
            new("projection", KvStorageType.F32, 0.5, 1),
        };
        foreach (var ratio in new[] { 2, 4, 8, 16, 32, 64 }) settings.Add(new("kvcompress", KvStorageType.F32, 1, ratio));
        settings.Add(new("kvcompress", KvStorageType.Q8, 1, 2));
        settings.Add(new("projection", KvStorageType.Q8, 0.5, 1));
        settings.Add(new("kvcompress + projection", KvStorageType.F32, 0.5, 2));
        settings.Add(new("kvcompress + projection", KvStorageType.Q8, 0.5, 2));
        settings.Add(new("kvcompress + projection", KvStorageType.Q8, 0.5, 8));
        settings.Add(new("projection, ranks per head", KvStorageType.F32, 0.5, 1, PerHeadRanks: true));
        settings.Add(new("projection, ranks per head", KvStorageType.Q8, 0.5, 1, PerHeadRanks: true));
        settings.Add(new("kvcompress + projection, ranks per head", KvStorageType.Q8, 0.5, 2, PerHeadRanks: true));
        if (only != null) settings = [settings[0], .. settings.Skip(1).Where(s => s.Name.Contains(only, StringComparison.Ordinal))];
        var rows = new List<(Setting S, int BytesPerToken, double Tps, int MaxBatch, long Preemptions)>();
        foreach (var s in settings)
        {
            using var engine = InferenceEngine.FromWeights(w, new EngineOptions(DeviceKind.Cpu, KvMemoryBytes: memory,
                BlockSize: blockSize, MaxBatchSize: 64, MaxTokensPerStep: 256,
                KvProjection: s.PerHeadRanks ? perHead : s.Dims < 1 ? identity.WithUniformRanks(s.Dims) : null, KvStorage: s.Storage));
            CompressionOptions? compression = s.Ratio == 1 ? null
                : new CompressionOptions(new EvictionBudget(MaxCacheTokens: (int)Math.Max(1, total / s.Ratio), ProtectedWindow: 8),
                    ObservationWindow: 8);
            var rng = new Random(1);
            var sw = Stopwatch.StartNew();
            var handles = Enumerable.Range(0, requests).Select(_ =>
                engine.Submit(Enumerable.Range(0, prompt).Select(_ => rng.Next(3, c.VocabSize)).ToArray(),
                    new GenerationOptions(output, SamplingOptions.Greedy, StopAtEos: false, Compression: compression))).ToList();
            Task.WaitAll(handles.Select(h => h.Completion).ToArray());
            double seconds = sw.Elapsed.TotalSeconds;
            var stats = engine.Stats;
            rows.Add((s, engine.KvBytesPerToken, requests * output / seconds, stats.MaxBatchReached, stats.Preemptions));
            Console.Error.WriteLine($"  {s.Name} {s.Storage} dims {s.Dims} x{s.Ratio}: {seconds:F1} s");
        }
        var baseline = rows[0];
        Console.WriteLine();
        Console.WriteLine("| cache | storage | feature dims | eviction | bytes per token per head | KV bytes vs full f32 | " +
            "output tok/s | vs full f32 | largest decode batch | preemptions |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|");
        foreach (var r in rows)
            Console.WriteLine($"| {r.S.Name} | {r.S.Storage.ToString().ToLowerInvariant()} | " +
                $"{(r.S.Dims < 1 ? $"{r.S.Dims:0.##}" : "1")} | " +
                $"{(r.S.Ratio == 1 ? "-" : $"{r.S.Ratio}x")} | {r.BytesPerToken} | {Fraction(r, baseline.BytesPerToken):0.###} | " +
                $"{r.Tps:F1} | {r.Tps / baseline.Tps:F2}x | {r.MaxBatch} | {r.Preemptions} |");
        var svg = Path.Combine("docs", "compression-throughput.svg");
        var series = rows.GroupBy(r => r.S.Name == "full" || r.S.Ratio == 1 && r.S.Dims == 1 ? "storage type only"
                : $"{r.S.Name}, {r.S.Storage.ToString().ToLowerInvariant()}")
            .ToDictionary(g => g.Key, g => (IReadOnlyList<(double X, double Y)>)g.Select(r => (1 / Fraction(r, baseline.BytesPerToken),
                r.Tps)).OrderBy(p => p.Item1).ToList());
        SvgPlot.Write(svg, "Output tokens/s under a fixed KV memory (cpu backend)", "KV bytes held per token, full f32 / this",
            "output tokens/s", series, baseline.Tps);
        Console.WriteLine($"plot: {svg} (full f32 cache: {baseline.Tps:F1} tok/s, the dashed line)");
    }

    /// <summary>The bytes a row holds per token of the sequence, against the full f32 cache's: its bytes per cached token
    /// over the eviction ratio.</summary>
    private static double Fraction((Setting S, int BytesPerToken, double Tps, int MaxBatch, long Preemptions) r, int fullBytes) =>
        r.BytesPerToken / (double)fullBytes / r.S.Ratio;
}
