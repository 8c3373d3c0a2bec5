using System.Diagnostics;
using KvIlgpu.Compute;
using KvIlgpu.Models;
using KvIlgpu.Models.Loading;

namespace KvIlgpu.Benchmarks;

/// <summary>Side-by-side decode measurement on one checkpoint: decode tokens/s for f32, f16 and bf16 weights, and
/// this machine's read bandwidth measured in the same run (a parallel SIMD sum over a buffer of the model's size),
/// so the figures come as ratios. Usage: decode MODEL.bin [tokens] [threads]</summary>
public static class DecodeTimer
{
    public static void Run(string path, int tokens, int? threads)
    {
        var f32 = ModelLoader.Load(path);
        Console.WriteLine($"model: {path}  dim={f32.Config.Dim} layers={f32.Config.Layers} heads={f32.Config.Heads}/{f32.Config.KvHeads} vocab={f32.Config.VocabSize} params={f32.ParameterCount / 1e6:F1}M");
        var backend = new ManagedSimdBackend(threads);
        Console.WriteLine($"backend: {backend.Name}");
        double bandwidth = MeasureReadBandwidth(f32.ByteSize, threads ?? Environment.ProcessorCount);
        Console.WriteLine($"read bandwidth (parallel SIMD sum over {f32.ByteSize / 1e6:F0} MB): {bandwidth / 1e9:F2} GB/s");
        Console.WriteLine("| weights | MB | decode tok/s | GB/s read | of measured bandwidth |");
        Console.WriteLine("|---|---|---|---|---|");
        foreach (var type in new[] { WeightType.F32, WeightType.F16, WeightType.BF16 })
        {
            var w = type == WeightType.F32 ? f32 : f32.ConvertMatrices(type);
            using var model = new LlamaModel(w, backend);
            using var cache = model.CreateCache();
            double tps = DecodeTokensPerSecond(model, cache, tokens);
            double gbs = tps * w.ByteSize / 1e9;
            Console.WriteLine($"| {type} | {w.ByteSize / 1e6:F0} | {tps:F1} | {gbs:F2} | {gbs * 1e9 / bandwidth:P0} |");
        }
    }

    public static double DecodeTokensPerSecond(LlamaModel model, Cache.DenseKvCache cache, int tokens)
    {
        int token = 1;
        // Warm-up: tiered JIT (with PGO) needs a few hundred calls before the hot loops are fully optimised.
        for (int i = 0; i < 256; i++) { if (cache.Length == cache.Capacity) cache.Length = 0; token = Next(model.Forward(cache, [token])); }
        cache.Length = 0;
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < tokens; i++) token = Next(model.Forward(cache, [token]));
        return tokens / sw.Elapsed.TotalSeconds;
    }

    private static int Next(float[] logits) => System.Numerics.Tensors.TensorPrimitives.IndexOfMax(logits);

    /// <summary>Bytes per second for reading a buffer of the given size, split across threads (best of 5).</summary>
    public static double MeasureReadBandwidth(long bytes, int threads)
    {
        var data = new float[bytes / 4];
        new Random(1).NextBytes(System.Runtime.InteropServices.MemoryMarshal.AsBytes(data.AsSpan()));
        for (int i = 0; i < data.Length; i++) data[i] = (data[i] % 1f);
        double best = 0;
        for (int rep = 0; rep < 5; rep++)
        {
            var sw = Stopwatch.StartNew();
            Parallel.For(0, threads, t =>
            {
                long start = data.LongLength * t / threads, end = data.LongLength * (t + 1) / threads;
                System.Numerics.Tensors.TensorPrimitives.Sum(data.AsSpan((int)start, (int)(end - start)));
            });
            best = Math.Max(best, bytes / sw.Elapsed.TotalSeconds);
        }
        return best;
    }
}
