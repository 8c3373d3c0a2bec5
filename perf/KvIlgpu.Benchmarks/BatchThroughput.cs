using System.Diagnostics;
using KvIlgpu.Compute;
using KvIlgpu.Engine;
using KvIlgpu.Evaluation;
using KvIlgpu.Models;
using KvIlgpu.Models.Loading;

namespace KvIlgpu.Benchmarks;

/// <summary>Batched decode throughput against batch size through the scheduler and the paged cache, plus single-
/// sequence decode through the dense and the paged path, all in one run.
/// Usage: batch MODEL.bin [tokens-per-request] [threads]. Writes docs/batch-throughput.svg.</summary>
internal static class BatchThroughput
{
    public static void Run(string path, int tokens, int? threads)
    {
        var w = ModelLoader.Load(path);
        var c = w.Config;
        Console.WriteLine($"model: {path}  dim={c.Dim} layers={c.Layers} heads={c.Heads}/{c.KvHeads} context={c.MaxSeqLen}; {tokens} " +
            $"tokens per request, prompt 16 tokens");

        // Batch 1: dense cache vs paged cache, same model, same greedy path.
        using (var model = new LlamaModel(w, new ManagedSimdBackend(threads)))
        {
            var (dense, last) = DecodeTimer.DecodeTokensPerSecond(model, tokens);
            Console.WriteLine($"batch 1, dense cache path: {dense:F1} tok/s (last token {last})");
        }
        var rows = new List<(int Batch, double Tps, int MaxBatch, long Steps)>();
        using var engine = InferenceEngine.FromWeights(w, new EngineOptions(DeviceKind.Cpu, threads, KvMemoryBytes: 512L << 20,
            MaxBatchSize: 64, MaxTokensPerStep: 256));
        // Warm-up (tiered JIT) through the same engine.
        Drive(engine, 8, 128);
        foreach (int batch in new[] { 1, 2, 4, 8, 16, 32, 64 })
        {
            var before = engine.Stats;
            var sw = Stopwatch.StartNew();
            Drive(engine, batch, tokens);
            double seconds = sw.Elapsed.TotalSeconds;
            var after = engine.Stats;
            rows.Add((batch, (after.GeneratedTokens - before.GeneratedTokens) / seconds, after.MaxBatchReached,
                after.Steps - before.Steps));
        }
        Console.WriteLine();
        Console.WriteLine("| batch | tokens/s (all requests) | per request tok/s | vs batch 1 |");
        Console.WriteLine("|---|---|---|---|");
        foreach (var r in rows)
            Console.WriteLine($"| {r.Batch} | {r.Tps:F1} | {r.Tps / r.Batch:F1} | {r.Tps / rows[0].Tps:F2}x |");
        Console.WriteLine($"batch 1 through the paged cache and scheduler: {rows[0].Tps:F1} tok/s (includes the 16-token prefill)");
        var svg = Path.Combine("docs", "batch-throughput.svg");
        SvgPlot.Write(svg, $"Batched decode, {c.Dim}-dim {c.Layers}-layer model, cpu backend", "batch size (requests decoded together)",
            "tokens/s, all requests",
            rows.Select(r => ((double)r.Batch, r.Tps)).ToList());
        Console.WriteLine($"plot: {svg}");
    }

    private static void Drive(InferenceEngine engine, int batch, int tokens)
    {
        var rng = new Random(batch);
        var handles = Enumerable.Range(0, batch).Select(i =>
            engine.Submit(Enumerable.Range(0, 16).Select(_ => rng.Next(3, engine.Config.VocabSize)).ToArray(),
                new GenerationOptions(tokens, SamplingOptions.Greedy, StopAtEos: false))).ToList();
        Task.WaitAll(handles.Select(h => h.Completion).ToArray());
    }
}
