using System.Diagnostics;
using KvIlgpu.Compute;

namespace KvIlgpu.Benchmarks;

/// <summary>The prefill's dense attention for one chunk, on one thread: the managed backend's (four query heads that share
/// a KV head a block, DenseHeadAttention.AttendFour) against the same queries one at a time (DenseHeadAttention.Attend,
/// which the backend ran for every query before). Usage: dense-attention START [ROWS] [HEADS] [KV_HEADS] [HEAD_DIM]: a
/// chunk of ROWS rows (default 64) whose first row is at position START, in the perf checkpoint's shape by default (8
/// heads on 2 KV heads, 64 wide); five alternated timings of each, medians, and a check that both give the same bits.</summary>
internal static class DenseAttentionBenchmark
{
    public static void Run(int start, int rows = 64, int heads = 8, int kvHeads = 2, int headDim = 64)
    {
        var backend = new ManagedSimdBackend(1);
        var s = new AttentionShape(rows, start, heads, kvHeads, headDim, 0);
        var rng = new Random(1);
        float[] R(int n) => Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();
        float[] q = R(rows * s.QDim), keys = R((start + rows) * s.KvDim), values = R((start + rows) * s.KvDim);
        using var dq = backend.Allocate(q.Length);
        using var dk = backend.Allocate(keys.Length);
        using var dv = backend.Allocate(values.Length);
        using var dout = backend.Allocate(rows * s.QDim);
        backend.Write(dq, q); backend.Write(dk, keys); backend.Write(dv, values);
        var one = new float[rows * s.QDim];
        var scores = new float[start + rows];
        float scale = 1f / MathF.Sqrt(headDim);
        void OneAtATime()
        {
            for (int r = 0; r < rows; r++)
                for (int h = 0; h < heads; h++)
                {
                    int len = start + r + 1, first = h / (heads / kvHeads) * headDim, span = (len - 1) * s.KvDim + headDim;
                    DenseHeadAttention.Attend(q.AsSpan(r * s.QDim + h * headDim, headDim), keys.AsSpan(first, span),
                        values.AsSpan(first, span), s.KvDim, len, scale, scores, one.AsSpan(r * s.QDim + h * headDim, headDim));
                }
        }
        int reps = Math.Max(5, 20000 / (start + rows));
        double Time(Action a)
        {
            for (int i = 0; i < 3; i++) a();
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < reps; i++) a();
            return sw.Elapsed.TotalMicroseconds / reps;
        }
        var four = new List<double>();
        var single = new List<double>();
        for (int round = 0; round < 5; round++)
        {
            four.Add(Time(() => backend.Attention(dq, dk, dv, dout, s)));
            single.Add(Time(OneAtATime));
        }
        var blocked = new float[one.Length];
        backend.Read(dout, blocked);
        bool same = blocked.Select(BitConverter.SingleToInt32Bits).SequenceEqual(one.Select(BitConverter.SingleToInt32Bits));
        double Median(List<double> xs) => xs.Order().ElementAt(xs.Count / 2);
        Console.WriteLine($"dense attention, {rows} rows from position {start}, {heads} heads on {kvHeads} KV heads, {headDim} wide, " +
            "1 thread, five alternated timings");
        Console.WriteLine($"four queries a block: {Median(four):F0} us (range {four.Min():F0}-{four.Max():F0})");
        Console.WriteLine($"one query at a time:  {Median(single):F0} us (range {single.Min():F0}-{single.Max():F0})");
        Console.WriteLine($"ratio {Median(single) / Median(four):F2}x; the same bits: {same}");
    }
}
