using KvIlgpu.Kernels;
using KvIlgpu.Models;

namespace KvIlgpu.Training;

/// <summary>The forward and backward ops of the Llama model, and AdamW, on one backend: the managed SIMD CPU code
/// (<see cref="ManagedTrainingOps"/>, over <see cref="ForwardBackward"/>) or ILGPU kernels (<see cref="IlgpuTrainingOps"/>, CUDA
/// or the CPU accelerator). Shapes are row-major as in ForwardBackward; backward ops ADD into their gradient outputs; a null
/// gradient output is skipped. RoPE runs at positions 0..rows-1 (training sees whole sequences).</summary>
internal interface ITrainingOps : IDisposable
{
    string Name { get; }
    /// <summary>Whether independent micro-batches may run on threads of their own (the managed CPU backend), rather
    /// than one after another on the accelerator.</summary>
    bool ParallelMicroBatches { get; }

    /// <summary>A zeroed tensor.</summary>
    TrainingTensor Allocate(int length);
    /// <summary>A tensor holding a host array's values: the array itself on the managed backend (no copy), a device
    /// copy on an accelerator.</summary>
    TrainingTensor Wrap(float[] host);
    /// <summary>Copies a tensor's values into a host array (nothing to do when the tensor wraps that array).</summary>
    void ToHost(TrainingTensor tensor, float[] host);
    void FromHost(ReadOnlySpan<float> host, TrainingTensor tensor);
    void Zero(TrainingTensor tensor);
    /// <summary>y = a + b (y may be a or b).</summary>
    void Add(TrainingTensor a, TrainingTensor b, TrainingTensor y);
    void Scale(TrainingTensor x, float factor);

    void Embed(ReadOnlySpan<int> tokens, TrainingTensor table, TrainingTensor y, int dim);
    void EmbeddingBackward(ReadOnlySpan<int> tokens, TrainingTensor dy, TrainingTensor dTable, int dim);
    /// <summary>y [m, n] = x [m, k] w [n, k]^T.</summary>
    void MatMul(TrainingTensor x, TrainingTensor w, TrainingTensor y, int m, int k, int n);
    void MatMulBackward(TrainingTensor x, TrainingTensor w, TrainingTensor dy, TrainingTensor? dx, TrainingTensor? dw, int m, int k, int n);
    void RmsNorm(TrainingTensor x, TrainingTensor w, TrainingTensor y, int rows, float eps);
    void RmsNormBackward(TrainingTensor x, TrainingTensor w, TrainingTensor dy, TrainingTensor dx, TrainingTensor? dw, int rows, float eps);
    /// <summary>RoPE in place (sign +1), or its transpose (sign -1), which is the backward.</summary>
    void Rope(TrainingTensor x, int rows, int heads, int headDim, RopeTable table, RopeLayout layout, int sign);
    /// <summary>y = silu(g) * u.</summary>
    void SwiGlu(TrainingTensor g, TrainingTensor u, TrainingTensor y);
    void SwiGluBackward(TrainingTensor g, TrainingTensor u, TrainingTensor dy, TrainingTensor dg, TrainingTensor du);
    /// <summary>Causal GQA attention of one sequence; probs (heads * t * t floats, in a layout each implementation
    /// chooses for its own backward) is kept for the backward.</summary>
    void Attention(TrainingTensor q, TrainingTensor k, TrainingTensor v, TrainingTensor output, TrainingTensor probs, int t, int heads,
        int kvHeads, int d);
    void AttentionBackward(TrainingTensor q, TrainingTensor k, TrainingTensor v, TrainingTensor probs, TrainingTensor dOut,
        TrainingTensor dq, TrainingTensor dk, TrainingTensor dv, int t, int heads, int kvHeads, int d);
    /// <summary>Cross-entropy per row; row r's gradient is scaled by rowScale[r]. Returns the plain mean loss.</summary>
    float CrossEntropy(TrainingTensor logits, ReadOnlySpan<int> targets, ReadOnlySpan<float> rowScale, TrainingTensor dLogits, int vocab);
    /// <summary>Mean KL(teacher || student) over rows; dStudent = (softmax(student) - softmax(teacher)) / rows.</summary>
    float KlDivergence(TrainingTensor teacher, TrainingTensor student, TrainingTensor dStudent, int vocab);
    double SumOfSquares(TrainingTensor x);
    void AdamW(TrainingTensor p, TrainingTensor g, TrainingTensor m, TrainingTensor v, AdamWStep step);
}
