using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using KvIlgpu.Compute;
using KvIlgpu.Models;
using KvIlgpu.Models.Loading;

namespace KvIlgpu.Benchmarks;

/// <summary>Decode and prefill speed of one model in every weight type, side by side with llama.cpp in one run.
/// Usage: weight-types LLAMA_BENCH|- THREADS ROUNDS FILE.gguf... — each file (f32, f16, bf16 written by `kvilgpu convert`,
/// the quantised ones by llama.cpp's llama-quantize from the f32 file) is timed by this engine's CPU backend
/// (greedy decode from token 1 after warm-up, and one 512-token prefill on a fresh cache, medians of three) and then,
/// unless LLAMA_BENCH is "-", by llama-bench (-p 512 -n 128 -r 3, the same threads), file after file, so both see the
/// same machine state. The first file is the yardstick for "vs first" and for the weight error, the relative RMS
/// difference of the decoded matrices from its own (give the f32 file first).</summary>
internal static class WeightTypesBenchmark
{
    public static void Run(string llamaBench, int threads, IReadOnlyList<string> files, int rounds = 1, int decodeTokens = 128,
        int prefillTokens = 512)
    {
        var backend = new ManagedSimdBackend(threads);
        Console.WriteLine($"backend: {backend.Name}; AVX2 {System.Runtime.Intrinsics.X86.Avx2.IsSupported}, AVX-512F " +
            $"{System.Runtime.Intrinsics.X86.Avx512F.IsSupported}, AVX-VNNI {System.Runtime.Intrinsics.X86.AvxVnni.IsSupported}; " +
            $"{rounds} round(s)");
        var info = new List<(string File, string Types, double MB, double Error)>();
        LlamaWeights? first = null;
        foreach (var file in files)
        {
            var w = ModelLoader.Load(file);
            first ??= w;
            string types = string.Join(" ", w.AllTensors().Distinct().Where(t => t.Rows > 1).GroupBy(t => t.Type)
                .OrderByDescending(g => g.Count()).Select(g => $"{g.Key}x{g.Count()}"));
            info.Add((Path.GetFileName(file), types, w.ByteSize / 1e6, RelativeError(first, w)));
        }
        // Every round times every file, ours then llama.cpp's, so a slow spell of the machine hits both; the table gives
        // medians over rounds, the ratios the medians of each round's ratio.
        var samples = files.Select(_ => new List<(double Decode, double Prefill, double? CppDecode, double? CppPrefill)>()).ToList();
        for (int round = 0; round < rounds; round++)
            for (int f = 0; f < files.Count; f++)
            {
                var w = ModelLoader.Load(files[f]);
                double decode, prefill;
                using (var model = new LlamaModel(w, backend))
                {
                    decode = Median(Enumerable.Range(0, 3)
                        .Select(_ => DecodeTimer.DecodeTokensPerSecond(model, decodeTokens).TokensPerSecond));
                    prefill = Median(Enumerable.Range(0, 3).Select(_ => PrefillTokensPerSecond(model, prefillTokens)));
                }
                var cpp = llamaBench == "-" ? null : LlamaBench(llamaBench, files[f], threads, prefillTokens, decodeTokens);
                samples[f].Add((decode, prefill, cpp?.Decode, cpp?.Prefill));
                Console.WriteLine($"round {round + 1}, {info[f].File}: decode {decode:F0} tok/s (llama.cpp {cpp?.Decode:F0}), prefill " +
                    $"{prefill:F0} tok/s (llama.cpp {cpp?.Prefill:F0})");
            }
        Console.WriteLine();
        Console.WriteLine("| file | matrix types | weights MB | weight error | decode tok/s | llama.cpp | ratio | vs first | " +
            $"prefill {prefillTokens} tok/s | llama.cpp | ratio |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|---|");
        string Ratio(IEnumerable<(double Ours, double? Theirs)> pairs) =>
            pairs.All(p => p.Theirs is > 0) ? $"{Median(pairs.Select(p => p.Ours / p.Theirs!.Value)):F2}x" : "-";
        string Of(double? v) => v is { } x ? x.ToString("F0", CultureInfo.InvariantCulture) : "-";
        for (int f = 0; f < files.Count; f++)
        {
            var s = samples[f];
            double? cppDecode = s.All(x => x.CppDecode != null) ? Median(s.Select(x => x.CppDecode!.Value)) : null;
            double? cppPrefill = s.All(x => x.CppPrefill != null) ? Median(s.Select(x => x.CppPrefill!.Value)) : null;
            var vsFirst = Median(s.Zip(samples[0], (a, b) => a.Decode / b.Decode));
            Console.WriteLine($"| {info[f].File} | {info[f].Types} | {info[f].MB:F1} | {info[f].Error:F4} | " +
                $"{Median(s.Select(x => x.Decode)):F0} | {Of(cppDecode)} | {Ratio(s.Select(x => (x.Decode, x.CppDecode)))} | " +
                $"{vsFirst:F2}x | {Median(s.Select(x => x.Prefill)):F0} | {Of(cppPrefill)} | " +
                $"{Ratio(s.Select(x => (x.Prefill, x.CppPrefill)))} |");
        }
        if (llamaBench == "-") return;
        // The ratios as a picture beside the table: a bar per engine step and weight type, parity with llama.cpp dashed.
        double MedianRatio(List<(double Decode, double Prefill, double? CppDecode, double? CppPrefill)> s, bool decode) =>
            s.All(x => (decode ? x.CppDecode : x.CppPrefill) is > 0)
                ? Median(s.Select(x => decode ? x.Decode / x.CppDecode!.Value : x.Prefill / x.CppPrefill!.Value)) : double.NaN;
        var svg = Path.Combine("docs", "perf", "weight-types-vs-llama-cpp.svg");
        Evaluation.SvgBarChart.Write(svg, $"KvIlgpu against llama.cpp, {threads} threads, median of {rounds} round(s)",
            "ratio of tokens/s (1 = llama.cpp's speed)",
            [.. info.Select(i => Path.GetFileNameWithoutExtension(i.File).Replace("perf-", "", StringComparison.Ordinal))],
            new Dictionary<string, IReadOnlyList<double>>
            {
                ["decode"] = [.. samples.Select(s => MedianRatio(s, decode: true))],
                [$"prefill {prefillTokens}"] = [.. samples.Select(s => MedianRatio(s, decode: false))],
            }, referenceY: 1);
        Console.WriteLine($"plot: {svg}");
    }

    /// <summary>The relative RMS difference of all matrices from the first file's, as this engine decodes them: a check
    /// that another tool's encoding is read right (a misread layout gives about 1.4).</summary>
    private static double RelativeError(LlamaWeights reference, LlamaWeights w)
    {
        double num = 0, den = 0;
        foreach (var (a, b) in reference.AllTensors().Zip(w.AllTensors()).Where(p => p.First.Rows > 1))
        {
            var x = a.ToFloat();
            var y = b.ToFloat();
            for (long i = 0; i < x.LongLength; i++)
            {
                num += (double)(x[i] - y[i]) * (x[i] - y[i]);
                den += (double)x[i] * x[i];
            }
        }
        return Math.Sqrt(num / den);
    }

    private static double Median(IEnumerable<double> xs)
    {
        var s = xs.OrderBy(x => x).ToList();
        return s[s.Count / 2];
    }

    /// <summary>One prefill of count tokens (ids 1.. in the vocabulary) into a fresh cache, after one untimed prefill.</summary>
    private static double PrefillTokensPerSecond(LlamaModel model, int count)
    {
        count = Math.Min(count, model.Config.MaxSeqLen - 1);
        var tokens = Enumerable.Range(0, count).Select(i => 1 + i * 7 % (model.Config.VocabSize - 1)).ToArray();
        using (var warm = model.CreateCache()) model.Forward(warm, tokens);
        using var cache = model.CreateCache();
        var sw = Stopwatch.StartNew();
        model.Forward(cache, tokens);
        return count / sw.Elapsed.TotalSeconds;
    }

    private static (double Decode, double Prefill)? LlamaBench(string exe, string file, int threads, int prompt, int gen)
    {
        var psi = new ProcessStartInfo(exe, ["-m", file, "-t", threads.ToString(CultureInfo.InvariantCulture), "-p",
            prompt.ToString(CultureInfo.InvariantCulture), "-n", gen.ToString(CultureInfo.InvariantCulture), "-r", "3", "-o", "json"])
        { RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(psi);
        if (p == null) return null;
        string stdout = p.StandardOutput.ReadToEnd();
        p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) { Console.WriteLine($"(llama-bench failed on {file}, exit code {p.ExitCode})"); return null; }
        double decode = 0, prefill = 0;
        foreach (var test in JsonDocument.Parse(stdout).RootElement.EnumerateArray())
        {
            double ts = test.GetProperty("avg_ts").GetDouble();
            if (test.GetProperty("n_gen").GetInt32() > 0) decode = ts; else prefill = ts;
        }
        return (decode, prefill);
    }
}

/// <summary>Where a decode step's time goes: every matrix of a model applied to one activation row, timed alone
/// (usage: weight-gemv FILE THREADS [ROWS], ROWS activation rows at once: 1 for decode, 64 for a prefill chunk).</summary>
internal static class WeightGemvBenchmark
{
    public static void Run(string file, int threads, int rows = 1)
    {
        var w = ModelLoader.Load(file);
        var backend = new ManagedSimdBackend(threads);
        double total = 0;
        for (int pass = 0; pass < 2; pass++, total = pass == 1 ? 0 : total)
            foreach (var g in w.AllTensors().Distinct().Where(t => t.Rows > 1).GroupBy(t => (t.Type, t.Rows, t.Cols)))
            {
                var t = g.First();
                using var dw = backend.Upload(t);
                using var dx = backend.Allocate(t.Cols * rows);
                using var dy = backend.Allocate(t.Rows * rows);
                backend.Write(dx, Enumerable.Range(0, t.Cols * rows).Select(i => MathF.Sin(i)).ToArray());
                int reps = Math.Max(20, 2000 / rows);
                for (int i = 0; i < reps / 10; i++) backend.MatMul(dx, dw, dy, rows);
                var sw = Stopwatch.StartNew();
                for (int i = 0; i < reps; i++) backend.MatMul(dx, dw, dy, rows);
                double us = sw.Elapsed.TotalMicroseconds / reps;
                total += us * g.Count();
                Console.WriteLine($"{t.Type} [{t.Rows} x {t.Cols}] x{g.Count()}: {us:F1} us each, " +
                    $"{t.ByteSize / us / 1e3:F1} GB/s, {2.0 * t.Rows * t.Cols * rows / us / 1e3:F1} GFLOP/s");
            }
        Console.WriteLine($"all matrices of {rows} token(s): {total / 1e3:F2} ms ({rows * 1e6 / total:F0} tok/s if nothing else ran)");
    }
}
