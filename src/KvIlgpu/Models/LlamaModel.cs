using KvIlgpu.Cache;
using KvIlgpu.Compute;

namespace KvIlgpu.Models;

/// <summary>A Llama-family decoder whose weights live on a compute backend's device. Forward runs a chunk of
/// tokens through every layer (RMSNorm, QKV, RoPE, cache write, causal GQA attention, output projection,
/// SwiGLU MLP) and returns logits. Long prompts are processed in chunks of at most MaxChunkRows tokens,
/// so activation memory does not grow with prompt length.</summary>
public sealed class LlamaModel : IDisposable
{
    private sealed record DeviceLayer(
        DeviceWeight AttentionNorm, DeviceWeight Wq, DeviceWeight Wk, DeviceWeight Wv, DeviceWeight Wo,
        DeviceWeight? Bq, DeviceWeight? Bk, DeviceWeight? Bv,
        DeviceWeight FfnNorm, DeviceWeight WGate, DeviceWeight WDown, DeviceWeight WUp);

    private readonly DeviceWeight _embedding, _finalNorm, _output;
    private readonly List<DeviceLayer> _layers = [];
    private readonly DeviceRope _rope;
    private readonly List<IDisposable> _owned = [];
    // Activations for one chunk: [MaxChunkRows, width].
    private readonly DeviceBuffer _x, _xb, _q, _k, _v, _att, _attOut, _gate, _up, _down, _logits;

    public ModelConfig Config { get; }
    public IComputeBackend Backend { get; }
    public int MaxChunkRows { get; }
    public long WeightBytes { get; }

    public LlamaModel(LlamaWeights weights, IComputeBackend backend, int maxChunkRows = 64, IProgress<(int Done, int Total)>? progress = null)
    {
        Config = weights.Config;
        Backend = backend;
        MaxChunkRows = maxChunkRows;
        var c = Config;
        int uploaded = 0, total = weights.AllTensors().Count();
        DeviceWeight Up(WeightTensor t)
        {
            var d = backend.Upload(t);
            _owned.Add(d);
            progress?.Report((++uploaded, total));
            return d;
        }
        _embedding = Up(weights.TokenEmbedding);
        foreach (var l in weights.Layers)
            _layers.Add(new DeviceLayer(Up(l.AttentionNorm), Up(l.Wq), Up(l.Wk), Up(l.Wv), Up(l.Wo),
                l.Bq is null ? null : Up(l.Bq), l.Bk is null ? null : Up(l.Bk), l.Bv is null ? null : Up(l.Bv),
                Up(l.FfnNorm), Up(l.WGate), Up(l.WDown), Up(l.WUp)));
        _finalNorm = Up(weights.FinalNorm);
        _output = ReferenceEquals(weights.Output, weights.TokenEmbedding) ? _embedding : Up(weights.Output);
        WeightBytes = weights.ByteSize;

        _rope = backend.UploadRope(new RopeTable(c));
        _owned.Add(_rope);
        DeviceBuffer A(int width) { var b = backend.Allocate(maxChunkRows * width); _owned.Add(b); return b; }
        _x = A(c.Dim); _xb = A(c.Dim); _q = A(c.QDim); _k = A(c.KvDim); _v = A(c.KvDim);
        _att = A(c.QDim); _attOut = A(c.Dim); _gate = A(c.HiddenDim); _up = A(c.HiddenDim); _down = A(c.Dim);
        _logits = A(c.VocabSize);
    }

    public DenseKvCache CreateCache(int? capacity = null) =>
        new(Backend, Config.Layers, capacity ?? Config.MaxSeqLen, Config.KvDim);

    /// <summary>Feeds tokens at positions cache.Length, cache.Length + 1, ... and appends their K/V to the cache.
    /// Returns the logits after the last token ([VocabSize]), or after every token ([tokens, VocabSize])
    /// when allLogits is set.</summary>
    public float[] Forward(DenseKvCache cache, ReadOnlySpan<int> tokens, bool allLogits = false)
    {
        if (tokens.Length == 0) throw new ArgumentException("no tokens to run", nameof(tokens));
        if (cache.Length + tokens.Length > cache.Capacity)
            throw new ContextOverflowException(cache.Length + tokens.Length, cache.Capacity);
        foreach (var t in tokens)
            if ((uint)t >= (uint)Config.VocabSize)
                throw new ArgumentOutOfRangeException(nameof(tokens), $"token id {t} is outside the vocabulary (0..{Config.VocabSize - 1})");
        int vocab = Config.VocabSize;
        var result = new float[(allLogits ? tokens.Length : 1) * vocab];
        for (int start = 0; start < tokens.Length; start += MaxChunkRows)
        {
            int rows = Math.Min(MaxChunkRows, tokens.Length - start);
            bool last = start + rows == tokens.Length;
            RunChunk(cache, tokens.Slice(start, rows), allLogits ? rows : last ? 1 : 0);
            if (allLogits) Backend.Read(_logits, result.AsSpan(start * vocab, rows * vocab));
            else if (last) Backend.Read(_logits, result);
        }
        return result;
    }

    /// <summary>Runs one chunk through the layers; computes logits for its last logitRows rows.</summary>
    private void RunChunk(DenseKvCache cache, ReadOnlySpan<int> tokens, int logitRows)
    {
        var b = Backend;
        var c = Config;
        int rows = tokens.Length, start = cache.Length;
        Span<int> positions = stackalloc int[rows];
        for (int r = 0; r < rows; r++) positions[r] = start + r;

        b.Embed(_embedding, tokens, _x);
        for (int l = 0; l < c.Layers; l++)
        {
            var L = _layers[l];
            b.RmsNorm(_x, L.AttentionNorm, _xb, rows, c.RmsNormEps);
            b.MatMul(_xb, L.Wq, _q, rows);
            b.MatMul(_xb, L.Wk, _k, rows);
            b.MatMul(_xb, L.Wv, _v, rows);
            if (L.Bq != null) b.AddBias(_q, L.Bq, rows);
            if (L.Bk != null) b.AddBias(_k, L.Bk, rows);
            if (L.Bv != null) b.AddBias(_v, L.Bv, rows);
            b.Rope(_q, rows, c.Heads, c.HeadDim, positions, c.RopeLayout, _rope);
            b.Rope(_k, rows, c.KvHeads, c.HeadDim, positions, c.RopeLayout, _rope);
            int offset = cache.LayerOffset(l) + start * c.KvDim;
            b.Copy(_k, 0, cache.Keys, offset, rows * c.KvDim);
            b.Copy(_v, 0, cache.Values, offset, rows * c.KvDim);
            b.Attention(_q, cache.Keys, cache.Values, _att,
                new AttentionShape(rows, start, c.Heads, c.KvHeads, c.HeadDim, cache.LayerOffset(l)));
            b.MatMul(_att, L.Wo, _attOut, rows);
            b.Add(_x, _attOut, rows * c.Dim);

            b.RmsNorm(_x, L.FfnNorm, _xb, rows, c.RmsNormEps);
            b.MatMul(_xb, L.WGate, _gate, rows);
            b.MatMul(_xb, L.WUp, _up, rows);
            b.SwiGlu(_gate, _up, rows * c.HiddenDim);
            b.MatMul(_gate, L.WDown, _down, rows);
            b.Add(_x, _down, rows * c.Dim);
        }
        cache.Length = start + rows;
        if (logitRows == 0) return;
        // Only the rows whose logits are wanted go through the final norm and the classifier.
        b.Copy(_x, (rows - logitRows) * c.Dim, _xb, 0, logitRows * c.Dim);
        b.RmsNorm(_xb, _finalNorm, _x, logitRows, c.RmsNormEps);
        b.MatMul(_x, _output, _logits, logitRows);
    }

    public void Dispose()
    {
        foreach (var d in _owned) d.Dispose();
        _owned.Clear();
    }
}

/// <summary>More tokens than the model's context (or the cache) holds.</summary>
public sealed class ContextOverflowException(int needed, int capacity)
    : Exception($"the sequence needs {needed} positions but the context holds {capacity}")
{
    public int Needed { get; } = needed;
    public int Capacity { get; } = capacity;
}
