using System.Diagnostics;
using KvIlgpu.Compute;

namespace KvIlgpu.Benchmarks;

/// <summary>What one parallel hand-over costs: an empty two-part loop on Parallel.For against the managed backend's
/// spinning workers, alternated (usage: hand-off [CALLS] [ROUNDS]). A decode step makes some sixty of them.</summary>
internal static class HandOffBenchmark
{
    public static void Run(int calls = 20000, int rounds = 3)
    {
        long sink = 0;
        var workers = SpinningWorkers.For(2);
        var options = new ParallelOptions { MaxDegreeOfParallelism = 2 };
        Console.WriteLine("| round | Parallel.For (us per call) | spinning workers (us per call) |");
        Console.WriteLine("|---|---|---|");
        for (int round = 1; round <= rounds; round++)
        {
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < calls; i++) Parallel.For(0, 2, options, p => Interlocked.Add(ref sink, p));
            double parallel = sw.Elapsed.TotalMicroseconds / calls;
            sw.Restart();
            for (int i = 0; i < calls; i++) workers.Run(p => Interlocked.Add(ref sink, p));
            double spinning = sw.Elapsed.TotalMicroseconds / calls;
            Console.WriteLine($"| {round} | {parallel:F2} | {spinning:F2} |");
        }
    }
}
