using System.Diagnostics;
using System.Text.Json;
using KvIlgpu.Compute;
using KvIlgpu.Models;
using KvIlgpu.Models.Loading;

namespace KvIlgpu.Benchmarks;

/// <summary>Side-by-side decode measurement on one llama2.c checkpoint, in one run: the C baseline
/// (perf/c-reference/decode.c built with llama2.c's runomp flags, -Ofast -fopenmp -march=native, and with -O3 alone),
/// this machine's read bandwidth, and KvIlgpu's managed SIMD backend with f32, f16 and bf16 weights. Every decoder
/// runs the same greedy path from token 1 (the last token is printed as a cross-check).
/// Usage: decode MODEL.bin [tokens] [threads]</summary>
internal static class DecodeTimer
{
    public static void Run(string path, int tokens, int? threads)
    {
        int n = threads ?? Environment.ProcessorCount;
        var f32 = ModelLoader.Load(path);
        var c = f32.Config;
        tokens = Math.Min(tokens, c.MaxSeqLen - 16);
        Console.WriteLine($"model: {path}  dim={c.Dim} layers={c.Layers} heads={c.Heads}/{c.KvHeads} vocab={c.VocabSize} " +
            $"params={f32.ParameterCount / 1e6:F1}M, {tokens} decode steps, {n} threads");
        double bandwidth = MeasureReadBandwidth(f32.ByteSize, n);
        var rows = new List<(string Name, double MB, double Tps, int Last)>();
        // llama2.c's Makefile builds `runomp` with -Ofast -fopenmp -march=native: that is the baseline. The -O3 build
        // (no fast math, so its reductions stay scalar) is shown for comparison only.
        foreach (var (name, flags) in new[] { ("C -Ofast -fopenmp -march=native (llama2.c runomp flags)", "-Ofast -march=native -fopenmp"),
            ("C -O3 -fopenmp (no fast math)", "-O3 -march=native -fopenmp") })
            if (RunC(path, tokens, n, flags) is { } r) rows.Add((name, f32.ByteSize / 1e6, r.Tps, r.Last));
        var backend = new ManagedSimdBackend(n);
        foreach (var type in new[] { WeightType.F32, WeightType.F16, WeightType.BF16 })
        {
            var w = type == WeightType.F32 ? f32 : f32.ConvertMatrices(type);
            using var model = new LlamaModel(w, backend);
            var (tps, last) = DecodeTokensPerSecond(model, tokens);
            rows.Add(($"KvIlgpu cpu, {type} weights", w.ByteSize / 1e6, tps, last));
        }
        double baseline = rows.FirstOrDefault(r => r.Name.StartsWith("C -Ofast", StringComparison.Ordinal)).Tps;
        Console.WriteLine($"read bandwidth, measured in this run (parallel SIMD sum over {f32.ByteSize / 1e6:F0} MB): " +
            $"{bandwidth / 1e9:F1} GB/s");
        Console.WriteLine();
        Console.WriteLine("| decoder | weights MB | tok/s | GB/s of weights | of read bandwidth | vs C runomp flags | last token |");
        Console.WriteLine("|---|---|---|---|---|---|---|");
        foreach (var r in rows)
            Console.WriteLine($"| {r.Name} | {r.MB:F0} | {r.Tps:F1} | {r.Tps * r.MB / 1e3:F1} | {r.Tps * r.MB * 1e6 / bandwidth:P0} | " +
                $"{(baseline > 0 ? $"{r.Tps / baseline:F2}x" : "-")} | {r.Last} |");
    }

    /// <summary>Greedy decode from token 1: warm-up steps first (tiered JIT needs a few hundred calls to fully
    /// optimise the hot loops, as the C decoder gets its warm-up too), then the timed steps on a fresh cache.</summary>
    public static (double TokensPerSecond, int LastToken) DecodeTokensPerSecond(LlamaModel model, int tokens)
    {
        using (var warm = model.CreateCache())
        {
            int t = 1;
            for (int i = 0; i < Math.Min(256, warm.Capacity); i++) t = Next(model.Forward(warm, [t]));
        }
        using var cache = model.CreateCache();
        int token = 1;
        for (int i = 0; i < 16; i++) token = Next(model.Forward(cache, [token]));
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < tokens; i++) token = Next(model.Forward(cache, [token]));
        return (tokens / sw.Elapsed.TotalSeconds, token);
    }

    private static int Next(float[] logits) => System.Numerics.Tensors.TensorPrimitives.IndexOfMax(logits);

    private static (double Tps, int Last)? RunC(string model, int tokens, int threads, string flags)
    {
        var source = FindSource();
        if (source == null) { Console.WriteLine("(perf/c-reference/decode.c not found: C baseline skipped)"); return null; }
        var exe = Path.Combine(Path.GetTempPath(), $"kvilgpu-cdecode-{flags.GetHashCode():X}");
        var cc = Process.Start(new ProcessStartInfo("cc", $"{flags} {source} -lm -o {exe}") { RedirectStandardError = true });
        if (cc == null) return null;
        cc.WaitForExit();
        if (cc.ExitCode != 0) { Console.WriteLine($"(cc failed: {cc.StandardError.ReadToEnd()})"); return null; }
        var psi = new ProcessStartInfo(exe, $"{model} {tokens}") { RedirectStandardOutput = true };
        psi.Environment["OMP_NUM_THREADS"] = threads.ToString(System.Globalization.CultureInfo.InvariantCulture);
        using var p = Process.Start(psi)!;
        var json = JsonDocument.Parse(p.StandardOutput.ReadToEnd()).RootElement;
        p.WaitForExit();
        return (json.GetProperty("tokens_per_s").GetDouble(), json.GetProperty("last_token").GetInt32());
    }

    private static string? FindSource()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
        {
            var p = Path.Combine(d.FullName, "perf", "c-reference", "decode.c");
            if (File.Exists(p)) return p;
        }
        return null;
    }

    /// <summary>Bytes per second for reading a buffer of the given size, split across threads (best of 5).</summary>
    public static double MeasureReadBandwidth(long bytes, int threads)
    {
        var data = new float[bytes / 4];
        data.AsSpan().Fill(1f);
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
