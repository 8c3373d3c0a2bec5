using ILGPU;
using ILGPU.Runtime;
using KvIlgpu.Compute;
using KvIlgpu.Kernels;
using KvIlgpu.Models;

namespace KvIlgpu.Training;

/// <summary>Training ops as ILGPU kernels on the accelerator of an <see cref="IlgpuBackend"/> (CUDA, or ILGPU's CPU
/// accelerator in tests). Tensors stay on the device for a whole forward and backward pass; only token ids, per-row
/// loss scales and losses cross to and from the host. Every kernel gives each output element to one thread, so results
/// do not depend on the launch shape and there are no atomics.</summary>
internal sealed class IlgpuTrainingOps : ITrainingOps
{
    private sealed class Tensor : TrainingTensor
    {
        public readonly MemoryBuffer1D<float, Stride1D.Dense> Memory;
        public Tensor(Accelerator a, int length)
        {
            Memory = a.Allocate1D<float>(Math.Max(1, length)); Memory.MemSetToZero(); Length = length;
        }
        public ArrayView<float> View => Memory.View.SubView(0, Math.Max(1, Length));
        public override void Dispose() => Memory.Dispose();
    }

    private readonly IlgpuBackend _backend;
    private readonly Accelerator _a;
    private readonly LaunchShape _shape;
    private readonly Dictionary<RopeTable, (MemoryBuffer1D<float, Stride1D.Dense> Cos, MemoryBuffer1D<float, Stride1D.Dense> Sin,
        MemoryBuffer1D<float, Stride1D.Dense> NegSin)> _ropeTables = [];
    private MemoryBuffer1D<int, Stride1D.Dense> _ints;
    private MemoryBuffer1D<float, Stride1D.Dense> _floats, _scratch;

    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int> _matMul, _matMulInputGrad,
        _matMulWeightGrad;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, float> _rmsNorm;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, int, float> _rmsInverse;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int,
        int> _rmsInputGrad;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int> _rmsWeightGrad;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, int, int, int, int> _rope;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int> _swiGlu, _sum;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
        int> _swiGluBackward;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<int>, ArrayView<float>, int, int> _embed;
    private readonly Action<KernelConfig, ArrayView<int>, ArrayView<float>, ArrayView<float>, int, int> _embeddingBackward;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int, float> _causalScores;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int, int> _causalWeightedSum;
    private readonly Action<KernelConfig, ArrayView<float>, int, int> _softmax;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, int, int> _softmaxGrad;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
        ArrayView<float>, int, int, int, int> _attentionKeyValueGrad;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int,
        int> _crossEntropy;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int,
        int> _kl;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, AdamWStep> _adamW;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, int> _sumOfSquares;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, int> _scaleKernel;

    private readonly bool _ownsBackend;

    /// <summary>Training ops on the backend's accelerator; with ownsBackend, disposing the ops disposes the backend.</summary>
    public IlgpuTrainingOps(IlgpuBackend backend, bool ownsBackend = false)
    {
        _backend = backend;
        _ownsBackend = ownsBackend;
        _a = backend.Accelerator;
        _shape = backend.Shape;
        _ints = _a.Allocate1D<int>(1024);
        _floats = _a.Allocate1D<float>(1024);
        _scratch = _a.Allocate1D<float>(1024);
        _matMul = _a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int,
            int>(MatMulKernels.GemvThreadPerOutput<float, F32Decoder>);
        _matMulInputGrad = _a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int,
            int>(MatMulKernels.MatMulInputGrad);
        _matMulWeightGrad = _a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int,
            int>(MatMulKernels.MatMulWeightGrad);
        _rmsNorm = _a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, float>(NormKernels.RmsNorm);
        _rmsInverse = _a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int, int, float>(NormKernels.RmsInverse);
        _rmsInputGrad = _a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int,
            int>(NormKernels.RmsNormInputGrad);
        _rmsWeightGrad = _a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int,
            int>(NormKernels.RmsNormWeightGrad);
        _rope = _a.LoadStreamKernel<ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, int, int, int,
            int>(RopeKernels.Rope);
        _swiGlu = _a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(ActivationKernels.SwiGluOut);
        _sum = _a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(ActivationKernels.Sum);
        _swiGluBackward = _a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            int>(ActivationKernels.SwiGluBackward);
        _embed = _a.LoadStreamKernel<ArrayView<float>, ArrayView<int>, ArrayView<float>, int, int>(EmbeddingKernels.Embed<float,
            F32Decoder>);
        _embeddingBackward = _a.LoadStreamKernel<ArrayView<int>, ArrayView<float>, ArrayView<float>, int,
            int>(EmbeddingKernels.EmbeddingBackward);
        _causalScores = _a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int,
            float>(AttentionKernels.CausalScores);
        _softmax = _a.LoadStreamKernel<ArrayView<float>, int, int>(AttentionKernels.TrainingSoftmax);
        _causalWeightedSum = _a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int,
            int>(AttentionKernels.CausalWeightedSum);
        _softmaxGrad = _a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int, int, int>(AttentionKernels.AttentionSoftmaxGrad);
        _attentionKeyValueGrad = _a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, ArrayView<float>, int, int, int, int>(AttentionKernels.AttentionKeyValueGrad);
        _crossEntropy = _a.LoadStreamKernel<ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int,
            int>(LossKernels.CrossEntropy);
        _kl = _a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int,
            int>(LossKernels.KlDivergence);
        _adamW = _a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int,
            AdamWStep>(OptimizerKernels.AdamW);
        _sumOfSquares = _a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int, int>(OptimizerKernels.SumOfSquaresPartials);
        _scaleKernel = _a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int>(ActivationKernels.Scale);
    }

    public string Name => "ilgpu " + _backend.Name;
    public bool ParallelMicroBatches => false;

    private static ArrayView<float> V(TrainingTensor t) => ((Tensor)t).View;
    private KernelConfig Each(long count) => _shape.Elementwise(count);

    public TrainingTensor Allocate(int length) => new Tensor(_a, length);
    public TrainingTensor Wrap(float[] host) { var t = new Tensor(_a, host.Length); FromHost(host, t); return t; }
    public void ToHost(TrainingTensor tensor, float[] host)
    {
        if (tensor.Length > 0) V(tensor).SubView(0, tensor.Length).CopyToCPU(host.AsSpan(0, tensor.Length));
    }
    public void FromHost(ReadOnlySpan<float> host, TrainingTensor tensor)
    {
        if (host.Length > 0) V(tensor).SubView(0, host.Length).CopyFromCPU(host);
    }
    public void Zero(TrainingTensor tensor) => ((Tensor)tensor).Memory.MemSetToZero();
    public void Add(TrainingTensor a, TrainingTensor b, TrainingTensor y) => _sum(Each(y.Length), V(a), V(b), V(y), y.Length);

    public void Scale(TrainingTensor x, float factor)
    {
        var f = Floats([factor]);
        _scaleKernel(Each(x.Length), V(x), f, x.Length);
    }

    /// <summary>Host values in the small upload buffers, grown as needed.</summary>
    private ArrayView<int> Ints(ReadOnlySpan<int> values)
    {
        if (_ints.Length < values.Length) { _ints.Dispose(); _ints = _a.Allocate1D<int>(Math.Max(values.Length, 2 * _ints.Length)); }
        ArrayView<int> view = _ints.View.SubView(0, Math.Max(1, values.Length));
        if (values.Length > 0) view.SubView(0, values.Length).CopyFromCPU(values);
        return view;
    }

    private ArrayView<float> Floats(ReadOnlySpan<float> values)
    {
        if (_floats.Length < values.Length)
        {
            _floats.Dispose(); _floats = _a.Allocate1D<float>(Math.Max(values.Length,
            2 * _floats.Length));
        }
        ArrayView<float> view = _floats.View.SubView(0, Math.Max(1, values.Length));
        if (values.Length > 0) view.SubView(0, values.Length).CopyFromCPU(values);
        return view;
    }

    /// <summary>Device scratch of at least length floats (the attention backward's score gradients, RMS inverses).</summary>
    private ArrayView<float> Scratch(long length)
    {
        if (_scratch.Length < length) { _scratch.Dispose(); _scratch = _a.Allocate1D<float>(Math.Max(length, 2 * _scratch.Length)); }
        return _scratch.View.SubView(0, Math.Max(1, length));
    }

    public void Embed(ReadOnlySpan<int> tokens, TrainingTensor table, TrainingTensor y, int dim) =>
        _embed(Each((long)tokens.Length * dim), V(table), Ints(tokens), V(y), tokens.Length, dim);

    public void EmbeddingBackward(ReadOnlySpan<int> tokens, TrainingTensor dy, TrainingTensor dTable, int dim) =>
        _embeddingBackward(Each(dim), Ints(tokens), V(dy), V(dTable), tokens.Length, dim);

    public void MatMul(TrainingTensor x, TrainingTensor w, TrainingTensor y, int m, int k, int n) =>
        _matMul(Each((long)m * n), V(x), V(w), V(y), m, n, k);

    public void MatMulBackward(TrainingTensor x, TrainingTensor w, TrainingTensor dy, TrainingTensor? dx, TrainingTensor? dw, int m,
        int k, int n)
    {
        if (dx != null) _matMulInputGrad(Each((long)m * k), V(dy), V(w), V(dx), m, k, n);
        if (dw != null) _matMulWeightGrad(Each((long)n * k), V(dy), V(x), V(dw), m, k, n);
    }

    public void RmsNorm(TrainingTensor x, TrainingTensor w, TrainingTensor y, int rows, float eps) =>
        _rmsNorm(_shape.WarpPerItem(rows), V(x), V(w), V(y), rows, w.Length, eps);

    public void RmsNormBackward(TrainingTensor x, TrainingTensor w, TrainingTensor dy, TrainingTensor dx, TrainingTensor? dw, int rows,
        float eps)
    {
        var inverse = Scratch(rows);
        _rmsInverse(Each(rows), V(x), inverse, rows, w.Length, eps);
        _rmsInputGrad(Each(rows), V(x), V(w), inverse, V(dy), V(dx), rows, w.Length);
        if (dw != null) _rmsWeightGrad(Each(w.Length), V(x), inverse, V(dy), V(dw), rows, w.Length);
    }

    public void Rope(TrainingTensor x, int rows, int heads, int headDim, RopeTable table, RopeLayout layout, int sign)
    {
        if (!_ropeTables.TryGetValue(table, out var t))
            _ropeTables[table] = t = (_a.Allocate1D(table.Cos), _a.Allocate1D(table.Sin), _a.Allocate1D(table.Sin.Select(s =>
                -s).ToArray()));
        if (rows > table.Cos.Length / (headDim / 2)) throw new ArgumentException($"{rows} positions exceed the RoPE table");
        var positions = Ints(Enumerable.Range(0, rows).ToArray());
        _rope(Each((long)rows * heads * headDim / 2), V(x), positions, t.Cos.View, sign > 0 ? t.Sin.View : t.NegSin.View,
            rows, heads, headDim, layout == RopeLayout.InterleavedPairs ? 1 : 0);
    }

    public void SwiGlu(TrainingTensor g, TrainingTensor u, TrainingTensor y) => _swiGlu(Each(y.Length), V(g), V(u), V(y), y.Length);
    public void SwiGluBackward(TrainingTensor g, TrainingTensor u, TrainingTensor dy, TrainingTensor dg, TrainingTensor du) =>
        _swiGluBackward(Each(g.Length), V(g), V(u), V(dy), V(dg), V(du), g.Length);

    public void Attention(TrainingTensor q, TrainingTensor k, TrainingTensor v, TrainingTensor output, TrainingTensor probs, int t,
        int heads, int kvHeads, int d)
    {
        _causalScores(Each((long)heads * t * t), V(q), V(k), V(probs), t, heads, kvHeads, d, 1f / MathF.Sqrt(d));
        _softmax(Each((long)heads * t), V(probs), t, heads);
        _causalWeightedSum(Each((long)t * heads * d), V(probs), V(v), V(output), t, heads, kvHeads, d, 0);
    }

    public void AttentionBackward(TrainingTensor q, TrainingTensor k, TrainingTensor v, TrainingTensor probs, TrainingTensor dOut,
        TrainingTensor dq, TrainingTensor dk, TrainingTensor dv, int t, int heads, int kvHeads, int d)
    {
        var dScores = Scratch((long)heads * t * t);
        _causalScores(Each((long)heads * t * t), V(dOut), V(v), dScores, t, heads, kvHeads, d, 1f);
        _softmaxGrad(Each((long)heads * t), V(probs), dScores, t, heads, d);
        _causalWeightedSum(Each((long)t * heads * d), dScores, V(k), V(dq), t, heads, kvHeads, d, 1);
        _attentionKeyValueGrad(Each((long)kvHeads * t * d), V(q), V(probs), dScores, V(dOut), V(dk), V(dv), t, heads, kvHeads, d);
    }

    public float CrossEntropy(TrainingTensor logits, ReadOnlySpan<int> targets, ReadOnlySpan<float> rowScale, TrainingTensor dLogits,
        int vocab)
    {
        int rows = targets.Length;
        var scale = rowScale.IsEmpty ? Enumerable.Repeat(1f / rows, rows).ToArray() : rowScale.ToArray();
        var targetView = Ints(targets);
        var scaleView = Floats(scale);
        var losses = Scratch(rows);
        _crossEntropy(Each(rows), V(logits), targetView, scaleView, V(dLogits), losses, rows, vocab);
        return Mean(losses, rows);
    }

    public float KlDivergence(TrainingTensor teacher, TrainingTensor student, TrainingTensor dStudent, int vocab)
    {
        int rows = student.Length / vocab;
        var scaleView = Floats(Enumerable.Repeat(1f / rows, rows).ToArray());
        var losses = Scratch(rows);
        _kl(Each(rows), V(teacher), V(student), scaleView, V(dStudent), losses, rows, vocab);
        return Mean(losses, rows);
    }

    private static float Mean(ArrayView<float> losses, int rows)
    {
        var host = new float[rows];
        losses.SubView(0, rows).CopyToCPU(host);
        return (float)host.Average(v => (double)v);
    }

    public double SumOfSquares(TrainingTensor x)
    {
        const int Chunks = 256;
        var partials = Scratch(Chunks);
        _sumOfSquares(Each(Chunks), V(x), partials, x.Length, Chunks);
        var host = new float[Chunks];
        partials.CopyToCPU(host);
        return host.Sum(v => (double)v);
    }

    public void AdamW(TrainingTensor p, TrainingTensor g, TrainingTensor m, TrainingTensor v, AdamWStep step) =>
        _adamW(Each(p.Length), V(p), V(g), V(m), V(v), p.Length, step);

    public void Dispose()
    {
        foreach (var (cos, sin, negSin) in _ropeTables.Values) { cos.Dispose(); sin.Dispose(); negSin.Dispose(); }
        _ints.Dispose(); _floats.Dispose(); _scratch.Dispose();
        if (_ownsBackend) _backend.Dispose();
    }
}
