using KvIlgpu.Models;

namespace KvIlgpu.Compute;

/// <summary>The operations a Llama forward pass needs. Every backend (ILGPU on CUDA or the CPU accelerator,
/// managed SIMD on the CPU) implements them with the same semantics; tests hold each to a plain C# reference.
/// Matrices are row-major; a batch of activations is [rows, width].</summary>
internal interface IComputeBackend : IDisposable
{
    string Name { get; }
    DeviceKind Kind { get; }
    /// <summary>Memory of the device in bytes (for sizing the KV cache as a fraction of it).</summary>
    long MemoryBytes { get; }
    /// <summary>Eviction planning where the cache lives, when this backend offers it (null: plan on the host).</summary>
    IDeviceEvictionPlanner? EvictionPlanner { get; }

    DeviceBuffer Allocate(int length);
    DeviceWeight Upload(WeightTensor weight);
    void Write(DeviceBuffer dst, ReadOnlySpan<float> src, int dstOffset = 0);
    void Read(DeviceBuffer src, Span<float> dst, int srcOffset = 0);
    /// <summary>dst[dstOffset ..+count] = src[srcOffset ..+count].</summary>
    void Copy(DeviceBuffer src, int srcOffset, DeviceBuffer dst, int dstOffset, int count);

    /// <summary>output[r, :] = table[tokens[r], :].</summary>
    void Embed(DeviceWeight table, ReadOnlySpan<int> tokens, DeviceBuffer output);
    /// <summary>output[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight.</summary>
    void RmsNorm(DeviceBuffer x, DeviceWeight weight, DeviceBuffer output, int rows, float eps);
    /// <summary>output[r, n] = sum_k x[r, k] * w[n, k]  (x: [rows, w.Cols], output: [rows, w.Rows]).</summary>
    void MatMul(DeviceBuffer x, DeviceWeight w, DeviceBuffer output, int rows);
    /// <summary>MatMul of one x against each of several weights of the same width (a layer's q, k and v projections; its
    /// gate and up), output i from weight i. A backend may run them as one product over all their rows; the results are
    /// MatMul's.</summary>
    void MatMuls(DeviceBuffer x, ReadOnlySpan<DeviceWeight> weights, ReadOnlySpan<DeviceBuffer> outputs, int rows)
    {
        for (int i = 0; i < weights.Length; i++) MatMul(x, weights[i], outputs[i], rows);
    }
    /// <summary>x[r, :] += bias.</summary>
    void AddBias(DeviceBuffer x, DeviceWeight bias, int rows);
    /// <summary>Rotates every head of x[r, :] (heads * headDim wide) by position positions[r].</summary>
    void Rope(DeviceBuffer x, int rows, int heads, int headDim, ReadOnlySpan<int> positions, RopeLayout layout, DeviceRope rope);
    /// <summary>gate[i] = silu(gate[i]) * up[i].</summary>
    void SwiGlu(DeviceBuffer gate, DeviceBuffer up, int count);
    /// <summary>x[i] += y[i].</summary>
    void Add(DeviceBuffer x, DeviceBuffer y, int count);
    /// <summary>x[i] *= y[yOffset + i] for i &lt; count.</summary>
    void Multiply(DeviceBuffer x, DeviceBuffer y, int yOffset, int count);
    /// <summary>Causal grouped-query attention: output[r, h*d..] = softmax(q.K^T / sqrt(d)) V over the cached
    /// positions, query head h reading KV head h / (Heads / KvHeads).</summary>
    void Attention(DeviceBuffer q, DeviceBuffer keyCache, DeviceBuffer valueCache, DeviceBuffer output, AttentionShape shape);
    /// <summary>Per-head affine map: output[r, h, i] = sum_j maps[h, i, j] (x[r, h, j] - subtract[h, j]) + add[h, i], x and
    /// output [rows, heads * headDim] (distinct buffers), maps [heads, headDim, headDim], subtract and add [heads, headDim].</summary>
    void ProjectHeads(DeviceBuffer x, DeviceBuffer output, int rows, int heads, int headDim, DeviceBuffer maps, DeviceBuffer subtract,
        DeviceBuffer add);
    DeviceIntBuffer AllocateInts(int length);
    void WriteInts(DeviceIntBuffer dst, ReadOnlySpan<int> src, int dstOffset = 0);
    void ReadInts(DeviceIntBuffer src, Span<int> dst, int srcOffset = 0);

    /// <summary>Writes k and v ([rows, KvHeads * HeadDim]) of one layer into the paged cache: row r goes to slot
    /// length - count + offset of each of its sequence's KV heads (rowInfo as in PagedAttentionKernels).</summary>
    void PagedWrite(DeviceBuffer k, DeviceBuffer v, PagedKvBuffers cache, DeviceIntBuffer rowInfo, int rows, int layer);
    /// <summary>Attention of q ([rows, Heads * HeadDim]) over the paged cache of one layer, each KV head up to its own
    /// length. probabilities ([rows * Heads, stride], stride >= longest head) receives the softmax probabilities of
    /// every slot when emitProbabilities is set, and is scratch otherwise.</summary>
    void PagedAttention(DeviceBuffer q, PagedKvBuffers cache, DeviceIntBuffer rowInfo, int rows, int layer,
        DeviceBuffer output, DeviceBuffer probabilities, int stride, bool emitProbabilities);

    /// <summary>Adds each slot's attention probability, summed over the query heads of its group, to its eviction metric:
    /// modes[r] is row r's <see cref="MetricAccumulation"/> (none, plain or squared), so rows of different requests
    /// accumulate different metrics in one step; probabilities as PagedAttention emitted them.</summary>
    void AccumulateMetric(DeviceBuffer probabilities, int stride, PagedKvBuffers cache, DeviceIntBuffer rowInfo,
        DeviceIntBuffer modes, int rows, int layer);

    /// <summary>Copies physical slot moves[3i] to moves[3i+1] of head moves[3i+2] (its K and V at that head's widths,
    /// position, metric, scales) for i &lt; count.</summary>
    void MoveSlots(PagedKvBuffers cache, DeviceIntBuffer moves, int count);

    /// <summary>Index of the largest of x[offset ..+count] (the first on ties).</summary>
    int ArgMax(DeviceBuffer x, int offset, int count);
    void Synchronize();
}
