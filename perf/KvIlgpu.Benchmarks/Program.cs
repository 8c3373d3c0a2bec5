using System.Globalization;
using BenchmarkDotNet.Running;
using KvIlgpu.Benchmarks;

if (args.Length > 0 && args[0] == "decode")
{
    DecodeTimer.Run(args.Length > 1 ? args[1] : "perf-24m.bin", args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 256,
        args.Length > 3 ? int.Parse(args[3], CultureInfo.InvariantCulture) : null);
    return;
}
if (args.Length > 0 && args[0] == "batch")
{
    BatchThroughput.Run(args.Length > 1 ? args[1] : "perf-24m.bin", args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture)
        : 128, args.Length > 3 ? int.Parse(args[3], CultureInfo.InvariantCulture) : null);
    return;
}
if (args.Length > 0 && args[0] == "compress-throughput")
{
    int Arg(int i, int d) => args.Length > i ? int.Parse(args[i], CultureInfo.InvariantCulture) : d;
    CompressionThroughput.Run(args.Length > 1 ? args[1] : "perf-24m.bin", Arg(2, 32), Arg(3, 512), Arg(4, 64), Arg(5, 4),
        args.Length > 6 ? args[6] : null);
    return;
}
if (args.Length > 0 && args[0] == "kv-decode")
{
    int Arg(int i, int d) => args.Length > i ? int.Parse(args[i], CultureInfo.InvariantCulture) : d;
    StorageDecode.Run(args.Length > 1 ? args[1] : "perf-24m.bin", Arg(2, 1024), Arg(3, 64), Arg(4, 3), args.Length > 5 ? args[5] : null);
    return;
}
if (args.Length > 0 && args[0] == "serve-throughput")
{
    int Arg(int i, int d) => args.Length > i ? int.Parse(args[i], CultureInfo.InvariantCulture) : d;
    await ServeThroughput.Run(args.Length > 1 ? args[1] : "weights/default", Arg(2, 4), Arg(3, 64), Arg(4, 32));
    return;
}
if (args.Length > 0 && args[0] == "train-throughput")
{
    TrainingThroughput.Run(args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 1024, args.Length > 2 ? int.Parse(args[2],
        CultureInfo.InvariantCulture) : 3, args.Length > 3 ? args[3] : "default");
    return;
}
if (args.Length > 0 && args[0] == "dense-attention")
{
    int[] a = args.Skip(1).Select(v => int.Parse(v, CultureInfo.InvariantCulture)).ToArray();
    DenseAttentionBenchmark.Run(a.Length > 0 ? a[0] : 448, a.Length > 1 ? a[1] : 64, a.Length > 2 ? a[2] : 8, a.Length > 3 ? a[3] : 2,
        a.Length > 4 ? a[4] : 64);
    return;
}
if (args.Length > 0 && args[0] == "weight-types")
{
    WeightTypesBenchmark.Run(args.Length > 1 ? args[1] : "-", args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 2,
        args.Skip(4).ToList(), args.Length > 3 ? int.Parse(args[3], CultureInfo.InvariantCulture) : 1);
    return;
}
if (args.Length > 0 && args[0] == "weight-gemv")
{
    WeightGemvBenchmark.Run(args[1], args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 2,
        args.Length > 3 ? int.Parse(args[3], CultureInfo.InvariantCulture) : 1);
    return;
}
if (args.Length > 0 && args[0] == "startup")
{
    int Arg(int i, int d) => args.Length > i ? int.Parse(args[i], CultureInfo.InvariantCulture) : d;
    StartupBenchmark.Run(args[1], args[2], Arg(3, 3), Arg(4, 64), Arg(5, 16));
    return;
}
if (args.Length > 0 && args[0] == "hand-off")
{
    HandOffBenchmark.Run(args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 20000,
        args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 3);
    return;
}
BenchmarkSwitcher.FromAssembly(typeof(DecodeTimer).Assembly).Run(args);
