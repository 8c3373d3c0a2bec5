using System.Numerics.Tensors;
using KvIlgpu.Kernels;
using KvIlgpu.Models;

namespace KvIlgpu.Training;

/// <summary>Training ops on the CPU with managed SIMD (the ForwardBackward functions; matrix products and attention on the
/// register blocks of <see cref="TrainingMatMul"/> and <see cref="TrainingAttention"/>); tensors wrap host arrays.</summary>
internal sealed class ManagedTrainingOps : ITrainingOps
{
    public static ManagedTrainingOps Instance { get; } = new();

    private sealed class Tensor : TrainingTensor
    {
        public readonly float[] Data;
        public Tensor(float[] data) { Data = data; Length = data.Length; }
        public override void Dispose() { }
    }

    private static float[] A(TrainingTensor t) => ((Tensor)t).Data;
    private static Span<float> S(TrainingTensor? t) => t is null ? Span<float>.Empty : ((Tensor)t).Data;

    public string Name => "cpu (managed SIMD)";
    public bool ParallelMicroBatches => true;
    public TrainingTensor Allocate(int length) => new Tensor(new float[length]);
    public TrainingTensor Wrap(float[] host) => new Tensor(host);
    public void ToHost(TrainingTensor tensor, float[] host) { if (!ReferenceEquals(A(tensor), host)) A(tensor).CopyTo(host, 0); }
    public void FromHost(ReadOnlySpan<float> host, TrainingTensor tensor) => host.CopyTo(A(tensor));
    public void Zero(TrainingTensor tensor) => Array.Clear(A(tensor));
    public void Add(TrainingTensor a, TrainingTensor b, TrainingTensor y) => TensorPrimitives.Add(A(a), A(b), A(y));
    public void Scale(TrainingTensor x, float factor) => TensorPrimitives.Multiply(A(x), factor, A(x));

    public void Embed(ReadOnlySpan<int> tokens, TrainingTensor table, TrainingTensor y, int dim)
    {
        for (int r = 0; r < tokens.Length; r++) A(table).AsSpan(tokens[r] * dim, dim).CopyTo(A(y).AsSpan(r * dim));
    }

    public void EmbeddingBackward(ReadOnlySpan<int> tokens, TrainingTensor dy, TrainingTensor dTable, int dim) =>
        ForwardBackward.EmbeddingBackward(tokens, A(dy), A(dTable), dim);
    public void MatMul(TrainingTensor x, TrainingTensor w, TrainingTensor y, int m, int k, int n) => TrainingMatMul.Forward(A(x), A(w),
        A(y), m, k, n);
    public void MatMulBackward(TrainingTensor x, TrainingTensor w, TrainingTensor dy, TrainingTensor? dx, TrainingTensor? dw, int m,
        int k, int n) =>
        TrainingMatMul.Backward(A(x), A(w), A(dy), S(dx), S(dw), m, k, n);
    public void RmsNorm(TrainingTensor x, TrainingTensor w, TrainingTensor y, int rows, float eps) =>
        ForwardBackward.RmsNorm(A(x), A(w), A(y), rows, eps);
    public void RmsNormBackward(TrainingTensor x, TrainingTensor w, TrainingTensor dy, TrainingTensor dx, TrainingTensor? dw, int rows,
        float eps) =>
        ForwardBackward.RmsNormBackward(A(x), A(w), A(dy), A(dx), dw is null ? new float[w.Length] : A(dw), rows, eps);

    public void Rope(TrainingTensor x, int rows, int heads, int headDim, RopeTable table, RopeLayout layout, int sign) =>
        ForwardBackward.Rope(A(x), rows, heads, headDim, Positions(rows), table, layout, sign);

    private static int[] _positions = [];
    private static int[] Positions(int rows)
    {
        var p = _positions;
        if (p.Length < rows) _positions = p = Enumerable.Range(0, Math.Max(rows, 2 * p.Length)).ToArray();
        return p;
    }

    public void SwiGlu(TrainingTensor g, TrainingTensor u, TrainingTensor y) => ForwardBackward.SwiGlu(A(g), A(u), A(y));
    public void SwiGluBackward(TrainingTensor g, TrainingTensor u, TrainingTensor dy, TrainingTensor dg, TrainingTensor du) =>
        ForwardBackward.SwiGluBackward(A(g), A(u), A(dy), A(dg), A(du));
    public void Attention(TrainingTensor q, TrainingTensor k, TrainingTensor v, TrainingTensor output, TrainingTensor probs, int t,
        int heads, int kvHeads, int d) =>
        TrainingAttention.Forward(A(q), A(k), A(v), A(output), A(probs), t, heads, kvHeads, d);
    public void AttentionBackward(TrainingTensor q, TrainingTensor k, TrainingTensor v, TrainingTensor probs, TrainingTensor dOut,
        TrainingTensor dq, TrainingTensor dk, TrainingTensor dv, int t, int heads, int kvHeads, int d) =>
        TrainingAttention.Backward(A(q), A(k), A(v), A(probs), A(dOut), A(dq), A(dk), A(dv), t, heads, kvHeads, d);
    public float CrossEntropy(TrainingTensor logits, ReadOnlySpan<int> targets, ReadOnlySpan<float> rowScale, TrainingTensor dLogits,
        int vocab) =>
        ForwardBackward.CrossEntropy(A(logits), targets, A(dLogits), vocab, rowScale);
    public float KlDivergence(TrainingTensor teacher, TrainingTensor student, TrainingTensor dStudent, int vocab) =>
        ForwardBackward.KlDivergence(A(teacher), A(student), A(dStudent), vocab);
    public double SumOfSquares(TrainingTensor x) => TensorPrimitives.SumOfSquares(A(x));

    public void AdamW(TrainingTensor p, TrainingTensor g, TrainingTensor m, TrainingTensor v, AdamWStep s)
    {
        float[] pa = A(p), ga = A(g), ma = A(m), va = A(v);
        for (int i = 0; i < pa.Length; i++)
        {
            float gi = ga[i] * s.GradScale;
            ma[i] = s.Beta1 * ma[i] + (1 - s.Beta1) * gi;
            va[i] = s.Beta2 * va[i] + (1 - s.Beta2) * gi * gi;
            float update = ma[i] / s.C1 / (MathF.Sqrt(va[i] / s.C2) + s.Epsilon);
            pa[i] -= s.LearningRate * (update + s.Decay * pa[i]);
        }
    }

    public void Dispose() { }
}
