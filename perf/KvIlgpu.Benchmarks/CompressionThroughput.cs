using System.Diagnostics;
using KvIlgpu.Compression;
using KvIlgpu.Compute;
using KvIlgpu.Engine;
using KvIlgpu.Evaluation;
using KvIlgpu.Models.Loading;

namespace KvIlgpu.Benchmarks;

/// <summary>KV-Compress's throughput experiment on our machines: many requests with long prompts under one fixed KV
/// memory, full cache against KV-Compress at compression ratios 1..64 (budget = (prompt + output) / ratio tokens per
/// head). Freed blocks let the scheduler decode more sequences together. Reports tokens/s and the largest decode batch.
/// Usage: compress-throughput MODEL.bin [requests] [prompt] [output] [full-sequences-of-memory]</summary>
internal static class CompressionThroughput
{
    public static void Run(string path, int requests, int prompt, int output, int memorySequences)
    {
        var w = ModelLoader.Load(path);
        var c = w.Config;
        int blockSize = 16, total = prompt + output;
        long perSequence = (long)c.Layers * c.KvHeads * ((total + blockSize - 1) / blockSize) * (2L * blockSize * c.HeadDim * 4
            + blockSize * 8);
        long memory = perSequence * memorySequences + (1 << 20);
        Console.WriteLine($"model: {path}; {requests} requests, {prompt}-token prompts, {output} tokens out; KV memory " +
            $"{memory / 1e6:F1} MB " +
            $"(room for {memorySequences} uncompressed sequences); protected window 8, observation window 8, block size {blockSize}");
        var rows = new List<(string Name, double Ratio, double Tps, int MaxBatch, long Preemptions, long Evicted)>();
        foreach (var (name, ratio) in new[] { ("full", 1.0), ("kvcompress", 1), ("kvcompress", 2), ("kvcompress", 4), ("kvcompress", 8),
            ("kvcompress", 16), ("kvcompress", 32), ("kvcompress", 64) })
        {
            using var engine = InferenceEngine.FromWeights(w, new EngineOptions(DeviceKind.Cpu, KvMemoryBytes: memory,
                BlockSize: blockSize, MaxBatchSize: 64, MaxTokensPerStep: 256));
            CompressionOptions? compression = name == "full" ? null
                : new CompressionOptions(new EvictionBudget(MaxCacheTokens: (int)Math.Max(1, total / ratio), ProtectedWindow: 8),
                    ObservationWindow: 8);
            var rng = new Random(1);
            var sw = Stopwatch.StartNew();
            var handles = Enumerable.Range(0, requests).Select(_ =>
                engine.Submit(Enumerable.Range(0, prompt).Select(_ => rng.Next(3, c.VocabSize)).ToArray(),
                    new GenerationOptions(output, SamplingOptions.Greedy, StopAtEos: false, Compression: compression))).ToList();
            Task.WaitAll(handles.Select(h => h.Completion).ToArray());
            double seconds = sw.Elapsed.TotalSeconds;
            var s = engine.Stats;
            rows.Add((name, ratio, requests * output / seconds, s.MaxBatchReached, s.Preemptions, s.EvictedKvs));
            Console.Error.WriteLine($"  {name} x{ratio}: {seconds:F1} s");
        }
        var baseline = rows[0].Tps;
        Console.WriteLine();
        Console.WriteLine("| cache | compression | output tok/s | vs full | largest decode batch | preemptions | KVs evicted |");
        Console.WriteLine("|---|---|---|---|---|---|---|");
        foreach (var r in rows)
            Console.WriteLine($"| {r.Name} | {(r.Name == "full" ? "-" : $"{r.Ratio}x")} | {r.Tps:F1} | {r.Tps / baseline:F2}x | " +
                $"{r.MaxBatch} | {r.Preemptions} | {r.Evicted:N0} |");
        var svg = Path.Combine("docs", "compression-throughput.svg");
        SvgPlot.Write(svg, "KV-Compress under a fixed KV memory (cpu backend)", "compression ratio", "output tokens/s",
            rows.Skip(1).Select(r => (r.Ratio, r.Tps)).ToList());
        Console.WriteLine($"plot: {svg} (full cache: {baseline:F1} tok/s)");
    }
}
