using BenchmarkDotNet.Attributes;
using KvIlgpu.Compute;
using KvIlgpu.Models;

namespace KvIlgpu.Benchmarks;

/// <summary>The matrix and attention kernels at the perf checkpoint's sizes (dim 512, hidden 1376, 8/2 heads), on the
/// managed SIMD backend and as ILGPU kernels on the CPU accelerator (and on CUDA when one is present).</summary>
[MemoryDiagnoser]
public class KernelBenchmarks
{
    [Params("cpu", "ilgpu-cpu")]
    public string Device { get; set; } = "cpu";

    [Params(WeightType.F32, WeightType.BF16)]
    public WeightType Weights { get; set; }

    private IComputeBackend _b = null!;
    private DeviceWeight _w = null!;
    private DeviceBuffer _x = null!, _y = null!, _q = null!, _k = null!, _v = null!, _o = null!;
    private const int N = 1376, K = 512, PrefillRows = 64, Positions = 1024, Heads = 8, KvHeads = 2, HeadDim = 64;

    [GlobalSetup]
    public void Setup()
    {
        _b = BackendFactory.Create(DeviceKinds.Parse(Device));
        var rng = new Random(1);
        float[] R(int n) => Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();
        _w = _b.Upload(WeightTensor.FromF32("w", N, K, R(N * K)).ConvertTo(Weights));
        _x = _b.Upload(R(PrefillRows * K));
        _y = _b.Allocate(PrefillRows * N);
        _q = _b.Upload(R(Heads * HeadDim));
        _k = _b.Upload(R(Positions * KvHeads * HeadDim));
        _v = _b.Upload(R(Positions * KvHeads * HeadDim));
        _o = _b.Allocate(Heads * HeadDim);
    }

    /// <summary>Decode: one activation row times a 1376x512 matrix.</summary>
    [Benchmark]
    public void Gemv() { _b.MatMul(_x, _w, _y, 1); _b.Synchronize(); }

    /// <summary>Prefill: 64 rows times the same matrix (tiled GEMM on ILGPU).</summary>
    [Benchmark]
    public void Gemm64() { _b.MatMul(_x, _w, _y, PrefillRows); _b.Synchronize(); }

    /// <summary>One decode step of GQA attention over 1024 cached positions.</summary>
    [Benchmark]
    public void DecodeAttention1024()
    {
        _b.Attention(_q, _k, _v, _o, new AttentionShape(1, Positions - 1, Heads, KvHeads, HeadDim, 0));
        _b.Synchronize();
    }

    [GlobalCleanup]
    public void Cleanup() => _b.Dispose();
}

/// <summary>One greedy decode step on the perf checkpoint (set KVILGPU_PERF_MODEL, default ./perf-24m.bin; make it
/// with python3 ../shared/tools/make-llama2c-model.py perf-24m.bin 512 1376 8 8 2 4096 1024 0 1).</summary>
public class DecodeBenchmarks
{
    [Params(WeightType.F32, WeightType.F16, WeightType.BF16)]
    public WeightType Weights { get; set; }

    private LlamaModel _model = null!;
    private Cache.DenseKvCache _cache = null!;
    private int _token = 1;

    [GlobalSetup]
    public void Setup()
    {
        var path = Environment.GetEnvironmentVariable("KVILGPU_PERF_MODEL") ?? "perf-24m.bin";
        if (!File.Exists(path)) throw new FileNotFoundException($"perf checkpoint not found: {path} (see the class comment)");
        var w = Models.Loading.ModelLoader.Load(path);
        _model = new LlamaModel(Weights == WeightType.F32 ? w : w.ConvertMatrices(Weights), new ManagedSimdBackend());
        _cache = _model.CreateCache();
    }

    /// <summary>Decode steps at positions 0..511, then the cache restarts (attention cost stays representative).</summary>
    [Benchmark]
    public int DecodeStep()
    {
        if (_cache.Length >= 512) _cache.Length = 0;
        var logits = _model.Forward(_cache, [_token]);
        _token = System.Numerics.Tensors.TensorPrimitives.IndexOfMax(logits);
        return _token;
    }

    [GlobalCleanup]
    public void Cleanup() { _cache.Dispose(); _model.Dispose(); }
}
