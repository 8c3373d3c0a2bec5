using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace KvIlgpu.Benchmarks;

/// <summary>What a user of the CLI sees from a fresh process: the prefill and decode tokens/s that `generate --json`
/// reports and the command's wall time, with the start-up warm-up on and off (KVILGPU_WARMUP=0), runs alternated so both
/// see the same machine (usage: startup CLI MODEL [RUNS] [PROMPT_TOKENS] [MAX_TOKENS]; CLI is the built KvIlgpu.Cli
/// executable).</summary>
internal static class StartupBenchmark
{
    public static void Run(string cli, string model, int runs = 3, int promptTokens = 64, int maxTokens = 16)
    {
        string ids = string.Join(",", Enumerable.Range(0, promptTokens).Select(i => 1 + i * 7 % 200));
        var results = new Dictionary<bool, List<(double Prefill, double Decode, double Wall, int Last)>> { [false] = [], [true] = [] };
        Console.WriteLine($"fresh `generate --model {model}` processes, a {promptTokens}-token prompt, {maxTokens} tokens, {runs} " +
            "alternated runs each");
        for (int run = 0; run < runs; run++)
            foreach (bool warmUp in new[] { false, true })
            {
                var r = Once(cli, model, ids, maxTokens, warmUp);
                results[warmUp].Add(r);
                Console.WriteLine($"run {run + 1}, warm-up {(warmUp ? "on " : "off")}: prefill {r.Prefill:F0} tok/s, decode " +
                    $"{r.Decode:F0} tok/s, wall {r.Wall:F2} s, last token {r.Last}");
            }
        Console.WriteLine();
        Console.WriteLine("| warm-up | prefill tok/s (median, range) | decode tok/s | wall s |");
        Console.WriteLine("|---|---|---|---|");
        foreach (bool warmUp in new[] { false, true })
        {
            var s = results[warmUp];
            string Of(Func<(double Prefill, double Decode, double Wall, int Last), double> f, string format) =>
                $"{Median(s.Select(f)).ToString(format, CultureInfo.InvariantCulture)} " +
                $"({s.Min(f).ToString(format, CultureInfo.InvariantCulture)}-{s.Max(f).ToString(format, CultureInfo.InvariantCulture)})";
            Console.WriteLine($"| {(warmUp ? "on" : "off")} | {Of(x => x.Prefill, "F0")} | {Of(x => x.Decode, "F0")} | " +
                $"{Of(x => x.Wall, "F2")} |");
        }
        bool same = results[false].Select(x => x.Last).Concat(results[true].Select(x => x.Last)).Distinct().Count() == 1;
        Console.WriteLine(same ? "every run ended on the same token" : "the runs ended on different tokens");
    }

    private static (double Prefill, double Decode, double Wall, int Last) Once(string cli, string model, string ids, int maxTokens,
        bool warmUp)
    {
        var psi = new ProcessStartInfo(cli, ["generate", "--model", model, "--prompt-ids", ids, "--max-tokens",
            maxTokens.ToString(CultureInfo.InvariantCulture), "--temperature", "0", "--json"])
        { RedirectStandardOutput = true, RedirectStandardError = true };
        if (!warmUp) psi.Environment["KVILGPU_WARMUP"] = "0";
        var sw = Stopwatch.StartNew();
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {cli}");
        string stdout = p.StandardOutput.ReadToEnd();
        p.StandardError.ReadToEnd();
        p.WaitForExit();
        double wall = sw.Elapsed.TotalSeconds;
        if (p.ExitCode != 0) throw new InvalidOperationException($"{cli} exited with {p.ExitCode}");
        var json = JsonDocument.Parse(stdout).RootElement;
        var tokens = json.GetProperty("token_ids").EnumerateArray().Select(t => t.GetInt32()).ToList();
        return (json.GetProperty("prefill_tokens_per_s").GetDouble(), json.GetProperty("decode_tokens_per_s").GetDouble(), wall,
            tokens.Count > 0 ? tokens[^1] : -1);
    }

    private static double Median(IEnumerable<double> xs)
    {
        var s = xs.OrderBy(x => x).ToList();
        return s[s.Count / 2];
    }
}
