using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using KvIlgpu.Kernels;
using KvIlgpu.Models;

namespace KvIlgpu.Compute;

/// <summary>Runs the ILGPU kernels on one accelerator: a CUDA GPU, or ILGPU's CPU accelerator for tests.</summary>
internal sealed class IlgpuBackend : IComputeBackend
{
    private sealed class Buffer : DeviceBuffer
    {
        public readonly MemoryBuffer1D<float, Stride1D.Dense> Memory;
        public Buffer(Accelerator a, int length) { Memory = a.Allocate1D<float>(Math.Max(1, length)); Length = length; }
        public ArrayView<float> View => Memory.View;
        public override void Dispose() => Memory.Dispose();
    }

    private sealed class Weight : DeviceWeight
    {
        public readonly MemoryBuffer1D<float, Stride1D.Dense>? F32;
        public readonly MemoryBuffer1D<ushort, Stride1D.Dense>? Bits16;
        /// <summary>Raw ggml blocks of a quantised weight, decoded in the kernels.</summary>
        public readonly MemoryBuffer1D<byte, Stride1D.Dense>? Blocks;
        public Weight(Accelerator a, WeightTensor w)
        {
            Rows = w.Rows; Cols = w.Cols; Type = w.Type;
            if (w.F32 != null) F32 = a.Allocate1D(w.F32);
            else if (w.Blocks != null) Blocks = a.Allocate1D(w.Blocks);
            else Bits16 = a.Allocate1D(w.Bits16!);
        }
        public override void Dispose() { F32?.Dispose(); Bits16?.Dispose(); Blocks?.Dispose(); }
    }

    /// <summary>The matrix-product and embedding kernels of one ggml block format, compiled when a weight of that format is
    /// first uploaded (a model uses two or three of the eight).</summary>
    private sealed class QuantKernels(
        Action<KernelConfig, ArrayView<float>, ArrayView<byte>, ArrayView<float>, int, int, int> gemv,
        Action<KernelConfig, ArrayView<float>, ArrayView<byte>, ArrayView<float>, int, int, int> perOutput,
        Action<KernelConfig, ArrayView<float>, ArrayView<byte>, ArrayView<float>, int, int, int, int> gemm,
        Action<KernelConfig, ArrayView<byte>, ArrayView<int>, ArrayView<float>, int, int> embed)
    {
        public readonly Action<KernelConfig, ArrayView<float>, ArrayView<byte>, ArrayView<float>, int, int, int> Gemv = gemv,
            PerOutput = perOutput;
        public readonly Action<KernelConfig, ArrayView<float>, ArrayView<byte>, ArrayView<float>, int, int, int, int> Gemm = gemm;
        public readonly Action<KernelConfig, ArrayView<byte>, ArrayView<int>, ArrayView<float>, int, int> Embed = embed;
    }

    private readonly Dictionary<WeightType, QuantKernels> _quantKernels = [];

    private QuantKernels LoadQuantKernels<TDecoder>() where TDecoder : struct, IWeightDecoder<byte>
    {
        var a = _accelerator;
        return new QuantKernels(
            a.LoadStreamKernel<ArrayView<float>, ArrayView<byte>, ArrayView<float>, int, int, int>(MatMulKernels.Gemv<byte, TDecoder>),
            a.LoadStreamKernel<ArrayView<float>, ArrayView<byte>, ArrayView<float>, int, int,
                int>(MatMulKernels.GemvThreadPerOutput<byte, TDecoder>),
            a.LoadStreamKernel<ArrayView<float>, ArrayView<byte>, ArrayView<float>, int, int, int,
                int>(MatMulKernels.TiledGemm<byte, TDecoder>),
            a.LoadStreamKernel<ArrayView<byte>, ArrayView<int>, ArrayView<float>, int, int>(EmbeddingKernels.Embed<byte, TDecoder>));
    }

    private QuantKernels KernelsFor(WeightType type)
    {
        if (_quantKernels.TryGetValue(type, out var kernels)) return kernels;
        kernels = type switch
        {
            WeightType.Q8_0 => LoadQuantKernels<Q8_0Decoder>(),
            WeightType.Q4_0 => LoadQuantKernels<Q4_0Decoder>(),
            WeightType.Q4_1 => LoadQuantKernels<Q4_1Decoder>(),
            WeightType.Q5_0 => LoadQuantKernels<Q5_0Decoder>(),
            WeightType.Q5_1 => LoadQuantKernels<Q5_1Decoder>(),
            WeightType.Q4_K => LoadQuantKernels<Q4_KDecoder>(),
            WeightType.Q5_K => LoadQuantKernels<Q5_KDecoder>(),
            WeightType.Q6_K => LoadQuantKernels<Q6_KDecoder>(),
            _ => throw new ArgumentOutOfRangeException(nameof(type)),
        };
        _quantKernels[type] = kernels;
        return kernels;
    }

    private sealed class IntBuffer : DeviceIntBuffer
    {
        public readonly MemoryBuffer1D<int, Stride1D.Dense> Memory;
        public IntBuffer(Accelerator a, int length) { Memory = a.Allocate1D<int>(Math.Max(1, length)); Length = length; }
        public ArrayView<int> View => Memory.View;
        public override void Dispose() => Memory.Dispose();
    }

    private readonly Context _context;
    private readonly Accelerator _accelerator;
    private readonly LaunchShape _shape;
    private readonly MemoryBuffer1D<int, Stride1D.Dense> _ints;
    private MemoryBuffer1D<float, Stride1D.Dense>? _scores;

    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int> _gemvF32;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<ushort>, ArrayView<float>, int, int, int> _gemvBf16, _gemvF16;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int> _perOutputF32;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<ushort>, ArrayView<float>, int, int, int> _perOutputBf16,
        _perOutputF16;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int> _gemmF32;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<ushort>, ArrayView<float>, int, int, int, int> _gemmBf16, _gemmF16;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<int>, ArrayView<float>, int, int> _embedF32;
    private readonly Action<KernelConfig, ArrayView<ushort>, ArrayView<int>, ArrayView<float>, int, int> _embedBf16, _embedF16;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, float> _rmsNorm;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, int, int, int, int> _rope;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, int> _swiGlu, _add, _multiply;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, int> _addBias;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int,
        int, int> _projectHeads;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
        AttentionParams> _attention;
    private readonly Action<KernelConfig, ArrayView<float>, int, int, ArrayView<int>> _argMax;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<int>,
        ArrayView<float>, ArrayView<float>,
        ArrayView<int>, ArrayView<int>, ArrayView<int>, int, int, PagedLayout> _pagedWrite;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<int>,
        ArrayView<int>, ArrayView<int>,
        ArrayView<float>, ArrayView<float>, int, int, int, int, PagedLayout> _pagedAttention;
    private readonly Action<KernelConfig, ArrayView<int>, ArrayView<int>, ArrayView<float>, ArrayView<float>,
        ArrayView<int>, ArrayView<int>, int, PagedLayout> _moveSlots;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<int>, ArrayView<int>,
        ArrayView<float>,
        int, int, int, PagedLayout> _accumulateMetric;

    /// <summary>Rows up to which a matrix product runs as warp-per-row GEMV rather than the tiled GEMM.</summary>
    public int GemvMaxRows { get; init; } = 4;

    private IlgpuBackend(Context context, Accelerator accelerator, DeviceKind kind, bool planEvictionOnDevice)
    {
        _planEvictionOnDevice = planEvictionOnDevice;
        _context = context;
        _accelerator = accelerator;
        Kind = kind;
        _shape = LaunchShape.For(accelerator);
        _ints = accelerator.Allocate1D<int>(4096);
        var a = accelerator;
        _gemvF32 = a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int>(MatMulKernels.Gemv<float,
            F32Decoder>);
        _gemvBf16 = a.LoadStreamKernel<ArrayView<float>, ArrayView<ushort>, ArrayView<float>, int, int, int>(MatMulKernels.Gemv<ushort,
            BF16Decoder>);
        _gemvF16 = a.LoadStreamKernel<ArrayView<float>, ArrayView<ushort>, ArrayView<float>, int, int, int>(MatMulKernels.Gemv<ushort,
            F16Decoder>);
        _perOutputF32 = a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int,
            int>(MatMulKernels.GemvThreadPerOutput<float, F32Decoder>);
        _perOutputBf16 = a.LoadStreamKernel<ArrayView<float>, ArrayView<ushort>, ArrayView<float>, int, int,
            int>(MatMulKernels.GemvThreadPerOutput<ushort, BF16Decoder>);
        _perOutputF16 = a.LoadStreamKernel<ArrayView<float>, ArrayView<ushort>, ArrayView<float>, int, int,
            int>(MatMulKernels.GemvThreadPerOutput<ushort, F16Decoder>);
        _gemmF32 = a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int,
            int>(MatMulKernels.TiledGemm<float, F32Decoder>);
        _gemmBf16 = a.LoadStreamKernel<ArrayView<float>, ArrayView<ushort>, ArrayView<float>, int, int, int,
            int>(MatMulKernels.TiledGemm<ushort, BF16Decoder>);
        _gemmF16 = a.LoadStreamKernel<ArrayView<float>, ArrayView<ushort>, ArrayView<float>, int, int, int,
            int>(MatMulKernels.TiledGemm<ushort, F16Decoder>);
        _embedF32 = a.LoadStreamKernel<ArrayView<float>, ArrayView<int>, ArrayView<float>, int, int>(EmbeddingKernels.Embed<float,
            F32Decoder>);
        _embedBf16 = a.LoadStreamKernel<ArrayView<ushort>, ArrayView<int>, ArrayView<float>, int, int>(EmbeddingKernels.Embed<ushort,
            BF16Decoder>);
        _embedF16 = a.LoadStreamKernel<ArrayView<ushort>, ArrayView<int>, ArrayView<float>, int, int>(EmbeddingKernels.Embed<ushort,
            F16Decoder>);
        _rmsNorm = a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, float>(NormKernels.RmsNorm);
        _rope = a.LoadStreamKernel<ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, int, int, int,
            int>(RopeKernels.Rope);
        _swiGlu = a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int>(ActivationKernels.SwiGlu);
        _add = a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int>(ActivationKernels.Add);
        _multiply = a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int>(ActivationKernels.Multiply);
        _addBias = a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int, int>(ActivationKernels.AddBias);
        _attention = a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            AttentionParams>(AttentionKernels.CausalAttention);
        _projectHeads = a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            int, int, int>(ProjectionKernels.ProjectHeads);
        _argMax = a.LoadStreamKernel<ArrayView<float>, int, int, ArrayView<int>>(SamplingKernels.ArgMax);
        _pagedWrite = a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<int>,
            ArrayView<float>, ArrayView<float>,
            ArrayView<int>, ArrayView<int>, ArrayView<int>, int, int, PagedLayout>(PagedAttentionKernels.Write);
        _moveSlots = a.LoadStreamKernel<ArrayView<int>, ArrayView<int>, ArrayView<float>, ArrayView<float>,
            ArrayView<int>, ArrayView<int>, int, PagedLayout>(PagedAttentionKernels.MoveSlots);
        _accumulateMetric = a.LoadStreamKernel<ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<int>, ArrayView<int>,
            ArrayView<float>,
            int, int, int, PagedLayout>(PagedAttentionKernels.AccumulateMetric);
        _pagedAttention = _shape.ThreadPerOutput
            ? a.LoadStreamKernel<ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<int>, ArrayView<int>,
                ArrayView<int>, ArrayView<float>, ArrayView<float>, int, int, int, int,
                PagedLayout>(PagedAttentionKernels.AttentionThreadPerHead)
            : a.LoadStreamKernel<ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<int>, ArrayView<int>,
                ArrayView<int>, ArrayView<float>, ArrayView<float>, int, int, int, int, PagedLayout>(PagedAttentionKernels.Attention);
    }

    // Measured on the golden model (2 cores): warps of 4 in groups of 16 took 64 s for 256 decode steps,
    // warps of 2 in groups of 2 take 22 s; sequential mode was slower still (3 m 49 s).
    private const int CpuWarpSize = 2;
    private const int CpuWarpsPerGroup = 1;
    private const CPUAcceleratorMode CpuMode = CPUAcceleratorMode.Parallel;

    /// <summary>Opens the first CUDA device, or ILGPU's CPU accelerator. Returns null for CUDA when none is present.</summary>
    public static IlgpuBackend? TryCreate(DeviceKind kind) => TryCreate(kind, CpuWarpSize, CpuWarpsPerGroup);

    /// <summary>As TryCreate, with the CPU accelerator's simulated warp and group size chosen (tests use wider
    /// groups to exercise tiles and warp shuffles of more lanes), and whether eviction is planned on the device
    /// (default: on CUDA only; ILGPU's CPU accelerator simulates the radix sorts slowly, so only tests ask).</summary>
    public static IlgpuBackend? TryCreate(DeviceKind kind, int cpuWarpSize, int cpuWarpsPerGroup, bool? planEvictionOnDevice = null)
    {
        // The CPU accelerator runs every simulated thread of a group as a real thread that meets the others at
        // each barrier, so few small groups are much faster than the default device's 16-thread groups.
        var cpu = new CPUDevice(cpuWarpSize, cpuWarpsPerGroup, Math.Max(1, Environment.ProcessorCount));
        var context = Context.Create(b => b.Cuda().CPU(cpu).EnableAlgorithms());
        try
        {
            if (kind == DeviceKind.Cuda)
            {
                var cuda = context.GetCudaDevices();
                if (cuda.Count == 0) { context.Dispose(); return null; }
                return new IlgpuBackend(context, cuda[0].CreateAccelerator(context), DeviceKind.Cuda, planEvictionOnDevice ?? true);
            }
            return new IlgpuBackend(context, context.CreateCPUAccelerator(0, CpuMode), DeviceKind.IlgpuCpu, planEvictionOnDevice ?? false);
        }
        catch
        {
            context.Dispose();
            throw;
        }
    }

    public string Name =>
        $"{(Kind == DeviceKind.Cuda ? "cuda" : "ilgpu-cpu")} ({_accelerator.Name}, {_accelerator.MemorySize / (1 << 20)} MiB)";
    public DeviceKind Kind { get; }
    public long MemoryBytes => Kind == DeviceKind.Cuda ? _accelerator.MemorySize : GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
    public Accelerator Accelerator => _accelerator;
    public LaunchShape Shape => _shape;

    private readonly bool _planEvictionOnDevice;
    private readonly object _plannerLock = new();
    private IlgpuEvictionPlanner? _planner;

    /// <summary>KV-Compress's planner on this accelerator (its kernels compiled on first use), when this backend plans
    /// eviction on the device; see <see cref="TryCreate(DeviceKind, int, int, bool?)"/>.</summary>
    public IDeviceEvictionPlanner? EvictionPlanner
    {
        get
        {
            if (!_planEvictionOnDevice) return null;
            lock (_plannerLock) return _planner ??= new IlgpuEvictionPlanner(_accelerator, _shape);
        }
    }

    private static ArrayView<float> V(DeviceBuffer b) => ((Buffer)b).View;
    /// <summary>The device memory behind a buffer of this backend (for kernels launched elsewhere in the library).</summary>
    internal static ArrayView<float> View(DeviceBuffer b) => V(b);
    internal static ArrayView<int> View(DeviceIntBuffer b) => IV(b);

    public DeviceBuffer Allocate(int length) => new Buffer(_accelerator, length);
    public DeviceWeight Upload(WeightTensor weight)
    {
        if (weight.Blocks != null) KernelsFor(weight.Type);
        return new Weight(_accelerator, weight);
    }

    public void Write(DeviceBuffer dst, ReadOnlySpan<float> src, int dstOffset = 0)
    {
        if (src.Length == 0) return;
        V(dst).SubView(dstOffset, src.Length).CopyFromCPU(src.ToArray());
    }

    public void Read(DeviceBuffer src, Span<float> dst, int srcOffset = 0)
    {
        if (dst.Length == 0) return;
        var tmp = new float[dst.Length];
        V(src).SubView(srcOffset, dst.Length).CopyToCPU(tmp);
        tmp.CopyTo(dst);
    }

    public void Copy(DeviceBuffer src, int srcOffset, DeviceBuffer dst, int dstOffset, int count)
    {
        if (count == 0) return;
        V(src).SubView(srcOffset, count).CopyTo(V(dst).SubView(dstOffset, count));
    }

    private ArrayView<int> UploadInts(ReadOnlySpan<int> values)
    {
        if (values.Length > _ints.Length) throw new ArgumentException($"at most {_ints.Length} rows per call");
        var view = _ints.View.SubView(0, values.Length);
        view.CopyFromCPU(values.ToArray());
        return view;
    }

    public void Embed(DeviceWeight table, ReadOnlySpan<int> tokens, DeviceBuffer output)
    {
        var t = (Weight)table;
        foreach (var id in tokens)
            if ((uint)id >= (uint)t.Rows) throw new ArgumentOutOfRangeException(nameof(tokens),
                $"token id {id} is outside the vocabulary (0..{t.Rows - 1})");
        var ids = UploadInts(tokens);
        var cfg = _shape.Elementwise((long)tokens.Length * t.Cols);
        if (t.Blocks != null) { KernelsFor(t.Type).Embed(cfg, t.Blocks.View, ids, V(output), tokens.Length, t.Cols); return; }
        switch (t.Type)
        {
            case WeightType.F32: _embedF32(cfg, t.F32!.View, ids, V(output), tokens.Length, t.Cols); break;
            case WeightType.BF16: _embedBf16(cfg, t.Bits16!.View, ids, V(output), tokens.Length, t.Cols); break;
            default: _embedF16(cfg, t.Bits16!.View, ids, V(output), tokens.Length, t.Cols); break;
        }
    }

    public void RmsNorm(DeviceBuffer x, DeviceWeight weight, DeviceBuffer output, int rows, float eps)
    {
        var w = (Weight)weight;
        _rmsNorm(_shape.WarpPerItem(rows), V(x), w.F32!.View, V(output), rows, w.Cols, eps);
    }

    public void MatMul(DeviceBuffer x, DeviceWeight w, DeviceBuffer output, int rows)
    {
        var wt = (Weight)w;
        int n = wt.Rows, k = wt.Cols;
        if (_shape.ThreadPerOutput)
        {
            var cfg = _shape.Elementwise((long)rows * n);
            if (wt.Blocks != null) { KernelsFor(wt.Type).PerOutput(cfg, V(x), wt.Blocks.View, V(output), rows, n, k); return; }
            switch (wt.Type)
            {
                case WeightType.F32: _perOutputF32(cfg, V(x), wt.F32!.View, V(output), rows, n, k); break;
                case WeightType.BF16: _perOutputBf16(cfg, V(x), wt.Bits16!.View, V(output), rows, n, k); break;
                default: _perOutputF16(cfg, V(x), wt.Bits16!.View, V(output), rows, n, k); break;
            }
        }
        else if (rows <= GemvMaxRows)
        {
            var cfg = _shape.WarpPerItem(n);
            if (wt.Blocks != null) { KernelsFor(wt.Type).Gemv(cfg, V(x), wt.Blocks.View, V(output), rows, n, k); return; }
            switch (wt.Type)
            {
                case WeightType.F32: _gemvF32(cfg, V(x), wt.F32!.View, V(output), rows, n, k); break;
                case WeightType.BF16: _gemvBf16(cfg, V(x), wt.Bits16!.View, V(output), rows, n, k); break;
                default: _gemvF16(cfg, V(x), wt.Bits16!.View, V(output), rows, n, k); break;
            }
        }
        else
        {
            int tile = _shape.Tile;
            var cfg = _shape.Tiled((long)((rows + tile - 1) / tile) * ((n + tile - 1) / tile));
            if (wt.Blocks != null) { KernelsFor(wt.Type).Gemm(cfg, V(x), wt.Blocks.View, V(output), rows, n, k, tile); return; }
            switch (wt.Type)
            {
                case WeightType.F32: _gemmF32(cfg, V(x), wt.F32!.View, V(output), rows, n, k, tile); break;
                case WeightType.BF16: _gemmBf16(cfg, V(x), wt.Bits16!.View, V(output), rows, n, k, tile); break;
                default: _gemmF16(cfg, V(x), wt.Bits16!.View, V(output), rows, n, k, tile); break;
            }
        }
    }

    public void AddBias(DeviceBuffer x, DeviceWeight bias, int rows)
    {
        var b = (Weight)bias;
        _addBias(_shape.Elementwise((long)rows * b.Cols), V(x), b.F32!.View, rows, b.Cols);
    }

    public void Rope(DeviceBuffer x, int rows, int heads, int headDim, ReadOnlySpan<int> positions, RopeLayout layout, DeviceRope rope)
    {
        var pos = UploadInts(positions);
        _rope(_shape.Elementwise((long)rows * heads * headDim / 2), V(x), pos, V(rope.Cos), V(rope.Sin),
            rows, heads, headDim, layout == RopeLayout.InterleavedPairs ? 1 : 0);
    }

    public void SwiGlu(DeviceBuffer gate, DeviceBuffer up, int count) => _swiGlu(_shape.Elementwise(count), V(gate), V(up), count);
    public void Add(DeviceBuffer x, DeviceBuffer y, int count) => _add(_shape.Elementwise(count), V(x), V(y), count);
    public void Multiply(DeviceBuffer x, DeviceBuffer y, int yOffset, int count) =>
        _multiply(_shape.Elementwise(count), V(x), V(y).SubView(yOffset, count), count);

    public void ProjectHeads(DeviceBuffer x, DeviceBuffer output, int rows, int heads, int headDim, DeviceBuffer maps,
        DeviceBuffer subtract, DeviceBuffer add) =>
        _projectHeads(_shape.Elementwise((long)rows * heads * headDim), V(x), V(output), V(maps), V(subtract), V(add), rows, heads,
            headDim);

    public void Attention(DeviceBuffer q, DeviceBuffer keyCache, DeviceBuffer valueCache, DeviceBuffer output, AttentionShape s)
    {
        int stride = s.StartPosition + s.Rows;
        long need = (long)s.Rows * s.Heads * stride;
        if (_scores == null || _scores.Length < need)
        {
            _scores?.Dispose();
            _scores = _accelerator.Allocate1D<float>(Math.Max(need, 1024));
        }
        var p = new AttentionParams
        {
            Rows = s.Rows, StartPosition = s.StartPosition, Heads = s.Heads, KvHeads = s.KvHeads,
            HeadDim = s.HeadDim, CacheOffset = s.CacheOffset, ScoreStride = stride,
        };
        _attention(_shape.WarpPerItem((long)s.Rows * s.Heads), V(q), V(keyCache), V(valueCache), V(output), _scores.View, p);
    }

    private static ArrayView<int> IV(DeviceIntBuffer b) => ((IntBuffer)b).View;
    public DeviceIntBuffer AllocateInts(int length) => new IntBuffer(_accelerator, length);

    public void WriteInts(DeviceIntBuffer dst, ReadOnlySpan<int> src, int dstOffset = 0)
    {
        if (src.Length == 0) return;
        IV(dst).SubView(dstOffset, src.Length).CopyFromCPU(src.ToArray());
    }

    public void ReadInts(DeviceIntBuffer src, Span<int> dst, int srcOffset = 0)
    {
        if (dst.Length == 0) return;
        var tmp = new int[dst.Length];
        IV(src).SubView(srcOffset, dst.Length).CopyToCPU(tmp);
        tmp.CopyTo(dst);
    }

    public void PagedWrite(DeviceBuffer k, DeviceBuffer v, PagedKvBuffers c, DeviceIntBuffer rowInfo, int rows, int layer) =>
        _pagedWrite(_shape.Elementwise((long)rows * c.Layout.KvHeads), V(k), V(v), IV(c.Blocks),
            IV(c.Positions), V(c.Metric), V(c.Scales), IV(c.Tables), IV(c.Lengths), IV(rowInfo), rows, layer, c.Layout);

    public void PagedAttention(DeviceBuffer q, PagedKvBuffers c, DeviceIntBuffer rowInfo, int rows, int layer,
        DeviceBuffer output, DeviceBuffer probabilities, int stride, bool emitProbabilities)
    {
        long items = (long)rows * c.Layout.Heads;
        var cfg = _shape.ThreadPerOutput ? _shape.Elementwise(items) : _shape.WarpPerItem(items);
        _pagedAttention(cfg, V(q), IV(c.Blocks), V(c.Scales), IV(c.Tables), IV(c.Lengths), IV(rowInfo), V(output),
            V(probabilities),
            rows, layer, stride, emitProbabilities ? 1 : 0, c.Layout);
    }

    public void AccumulateMetric(DeviceBuffer probabilities, int stride, PagedKvBuffers c, DeviceIntBuffer rowInfo,
        DeviceIntBuffer modes, int rows, int layer) =>
        _accumulateMetric(_shape.Elementwise((long)rows * c.Layout.KvHeads * stride), V(probabilities), IV(c.Tables), IV(c.Lengths),
            IV(rowInfo), IV(modes), V(c.Metric), rows, layer, stride, c.Layout);

    public void MoveSlots(PagedKvBuffers c, DeviceIntBuffer pairs, int count)
    {
        if (count == 0) return;
        _moveSlots(_shape.Elementwise((long)count * (c.Layout.BlockWords / c.Layout.BlockSize)), IV(c.Blocks), IV(c.Positions),
            V(c.Metric), V(c.Scales), IV(c.Tables), IV(pairs), count, c.Layout);
    }

    public int ArgMax(DeviceBuffer x, int offset, int count)
    {
        _argMax(new KernelConfig(1, _shape.WarpSize), V(x), offset, count, _ints.View.SubView(0, 1));
        var result = new int[1];
        _ints.View.SubView(0, 1).CopyToCPU(result);
        return result[0];
    }

    public void Synchronize() => _accelerator.Synchronize();

    public void Dispose()
    {
        _scores?.Dispose();
        _ints.Dispose();
        _accelerator.Dispose();
        _context.Dispose();
    }
}
