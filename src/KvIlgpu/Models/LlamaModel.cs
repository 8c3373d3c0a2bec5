using KvIlgpu.Cache;
using KvIlgpu.Compute;
using KvIlgpu.Projection;

namespace KvIlgpu.Models;

/// <summary>A Llama-family decoder whose weights live on a compute backend's device. Forward runs a chunk of
/// tokens through every layer (RMSNorm, QKV, RoPE, cache write, causal GQA attention, output projection,
/// SwiGLU MLP) and returns logits. Long prompts are processed in chunks of at most MaxChunkRows tokens,
/// so activation memory does not grow with prompt length.</summary>
internal sealed class LlamaModel : IDisposable
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
    // Keys, values, queries and attention outputs in a KV projection's coordinates, when one is set.
    private DeviceBuffer? _kProjected, _vProjected, _qProjected, _attProjected;
    private DeviceKvProjection? _projection;

    public ModelConfig Config { get; }
    public IComputeBackend Backend { get; }
    public int MaxChunkRows { get; }
    public long WeightBytes { get; }

    public LlamaModel(LlamaWeights weights, IComputeBackend backend, int maxChunkRows = 64, IProgress<(int Done,
        int Total)>? progress = null)
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

    /// <summary>The MatryoshkaKV projection applied to every layer's keys and values before they are cached (null:
    /// none). Checked against the model's shape when set.</summary>
    public KvProjection? Projection
    {
        get;
        set
        {
            _projection?.Dispose();
            _projection = null;
            field = value?.CheckedFor(Config, value.Source ?? "KvProjection");
            if (value == null) return;
            _projection = new DeviceKvProjection(Backend, value, Config.Heads);
            _kProjected ??= Backend.Allocate(MaxChunkRows * Config.KvDim);
            _vProjected ??= Backend.Allocate(MaxChunkRows * Config.KvDim);
            _qProjected ??= Backend.Allocate(MaxChunkRows * Config.QDim);
            _attProjected ??= Backend.Allocate(MaxChunkRows * Config.QDim);
        }
    }

    /// <summary>A read-only tap on the keys (after RoPE) and values each layer computes, before any projection: called with
    /// (layer, keys, values, rows), both [rows, KvHeads * HeadDim] copied to the host. For calibration; slow.</summary>
    public Action<int, float[], float[], int>? KvObserver { get; set; }

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
        int vocab = Config.VocabSize;
        var result = new float[(allLogits ? tokens.Length : 1) * vocab];
        for (int start = 0; start < tokens.Length; start += MaxChunkRows)
        {
            int rows = Math.Min(MaxChunkRows, tokens.Length - start);
            bool last = start + rows == tokens.Length;
            var positions = Enumerable.Range(cache.Length, rows).ToArray();
            int[] logitRows = allLogits ? Enumerable.Range(0, rows).ToArray() : last ? [rows - 1] : [];
            RunRows(new DenseStep(cache, cache.Length), tokens.Slice(start, rows), positions, logitRows);
            cache.Length += rows;
            if (allLogits) Backend.Read(_logits, result.AsSpan(start * vocab, rows * vocab));
            else if (last) Backend.Read(_logits, result);
        }
        return result;
    }

    /// <summary>Throws unless every (layer, KV head) of the cache stores at least the features the model writes there: its
    /// projection's ranks, or head_dim without one.</summary>
    private void CheckCacheWidths(PagedKvCache cache)
    {
        for (int l = 0; l < Config.Layers; l++)
            for (int h = 0; h < Config.KvHeads; h++)
            {
                var shape = cache.Shape(l, h);
                int keyWidth = Projection?.Rank(KvPart.Key, l, h) ?? Config.HeadDim;
                int valueWidth = Projection?.Rank(KvPart.Value, l, h) ?? Config.HeadDim;
                if (shape.KeyWidth < keyWidth || shape.ValueWidth < valueWidth)
                    throw new InvalidOperationException($"the cache stores {shape.KeyWidth} key and {shape.ValueWidth} value features " +
                        $"in layer {l}'s KV head {h}, but the model's KV projection needs {keyWidth} and {valueWidth}");
            }
    }

    /// <summary>One step of a batch over the paged cache: rows of several sequences (a prompt chunk or one decode
    /// token each). The caller has reserved room and already added each sequence's row count to its head lengths.
    /// Returns logits [logitRows.Length, VocabSize] for the requested rows; when probabilities is given, the last
    /// layer's per-slot attention probabilities are left in it (see PagedAttention).</summary>
    public float[] ForwardBatch(PagedKvCache cache, ReadOnlySpan<BatchRow> rows, ReadOnlySpan<int> logitRows, MetricRequest? metric = null)
    {
        if (rows.Length == 0 || rows.Length > MaxChunkRows)
            throw new ArgumentOutOfRangeException(nameof(rows), $"a step takes 1..{MaxChunkRows} rows, got {rows.Length}");
        CheckCacheWidths(cache);
        var info = new int[rows.Length * 4];
        var tokens = new int[rows.Length];
        var positions = new int[rows.Length];
        int longest = 0;
        for (int r = 0; r < rows.Length; r++)
        {
            var row = rows[r];
            (info[4 * r], info[4 * r + 1], info[4 * r + 2], info[4 * r + 3]) = (row.Sequence, row.Count, row.Offset, row.Position);
            tokens[r] = row.Token;
            positions[r] = row.Position;
            for (int l = 0; l < Config.Layers; l++)
                for (int h = 0; h < Config.KvHeads; h++)
                    longest = Math.Max(longest, cache.Length(row.Sequence, l, h));
        }
        if (_rowInfo == null || _rowInfo.Length < info.Length)
        {
            _rowInfo?.Dispose();
            _rowInfo = Backend.AllocateInts(MaxChunkRows * 4);
        }
        Backend.WriteInts(_rowInfo, info);
        long scratch = (long)rows.Length * Config.Heads * longest;
        if (_probabilities == null || _probabilities.Length < scratch)
        {
            _probabilities?.Dispose();
            _probabilities = Backend.Allocate((int)Math.Max(scratch, 1024));
        }
        DeviceIntBuffer? accumulate = null;
        if (metric?.Accumulate is { } mask && mask.Any(m => m != MetricAccumulation.None))
        {
            accumulate = Backend.AllocateInts(rows.Length);
            Backend.WriteInts(accumulate, mask.Select(m => (int)m).ToArray());
        }
        // ThinK: each row's key channel factors for every layer ([layer, row, kvDim]; 1 where a row keeps every channel),
        // uploaded once for the step.
        DeviceBuffer? keyFactors = null;
        if (metric?.KeyMasks is { } masks)
        {
            int kvDim = Config.KvDim;
            var factors = new float[Config.Layers * rows.Length * kvDim];
            for (int l = 0; l < Config.Layers; l++)
                for (int r = 0; r < rows.Length; r++)
                    if (masks[r] is { } rowMask) rowMask[l].CopyTo(factors, (l * rows.Length + r) * kvDim);
                    else factors.AsSpan((l * rows.Length + r) * kvDim, kvDim).Fill(1f);
            keyFactors = Backend.Allocate(factors.Length);
            Backend.Write(keyFactors, factors);
        }
        try
        {
            RunRows(new PagedStep(cache, _rowInfo, _probabilities, longest, metric, accumulate, Config.Heads, keyFactors), tokens,
                positions, logitRows);
        }
        finally { accumulate?.Dispose(); keyFactors?.Dispose(); }
        var result = new float[logitRows.Length * Config.VocabSize];
        if (result.Length > 0) Backend.Read(_logits, result);
        return result;
    }

    private DeviceIntBuffer? _rowInfo;
    private DeviceBuffer? _probabilities;

    /// <summary>Where one step's keys and values go and how its queries read them back.</summary>
    private interface IKvStep
    {
        void Write(IComputeBackend b, int layer, DeviceBuffer k, DeviceBuffer v, int rows, int kvDim);
        void Attend(IComputeBackend b, int layer, DeviceBuffer q, DeviceBuffer output, int rows, ModelConfig c);
    }

    private sealed record DenseStep(DenseKvCache Cache, int Start) : IKvStep
    {
        public void Write(IComputeBackend b, int layer, DeviceBuffer k, DeviceBuffer v, int rows, int kvDim)
        {
            int offset = Cache.LayerOffset(layer) + Start * kvDim;
            b.Copy(k, 0, Cache.Keys, offset, rows * kvDim);
            b.Copy(v, 0, Cache.Values, offset, rows * kvDim);
        }

        public void Attend(IComputeBackend b, int layer, DeviceBuffer q, DeviceBuffer output, int rows, ModelConfig c) =>
            b.Attention(q, Cache.Keys, Cache.Values, output, new AttentionShape(rows, Start, c.Heads, c.KvHeads, c.HeadDim,
                Cache.LayerOffset(layer)));
    }

    private sealed record PagedStep(PagedKvCache Cache, DeviceIntBuffer RowInfo, DeviceBuffer Probabilities, int Stride,
        MetricRequest? Metric, DeviceIntBuffer? Accumulate, int Heads, DeviceBuffer? KeyFactors) : IKvStep
    {
        public void Write(IComputeBackend b, int layer, DeviceBuffer k, DeviceBuffer v, int rows, int kvDim)
        {
            // ThinK: each row's pruned key channels are zeroed before the write.
            if (KeyFactors != null) b.Multiply(k, KeyFactors, layer * rows * kvDim, rows * kvDim);
            b.PagedWrite(k, v, Cache.Buffers, RowInfo, rows, layer);
        }

        public void Attend(IComputeBackend b, int layer, DeviceBuffer q, DeviceBuffer output, int rows, ModelConfig c)
        {
            if (Metric?.QueryRows is { Count: > 0 } queryRows)
                foreach (var (row, sink) in queryRows)
                {
                    var qRow = new float[c.QDim];
                    b.Read(q, qRow, row * c.QDim);
                    sink(layer, qRow);
                }
            bool emit = Accumulate != null || Metric?.WindowRows.Count > 0;
            b.PagedAttention(q, Cache.Buffers, RowInfo, rows, layer, output, Probabilities, Stride, emitProbabilities: emit);
            if (Accumulate != null) b.AccumulateMetric(Probabilities, Stride, Cache.Buffers, RowInfo, Accumulate, rows, layer);
            if (Metric?.WindowRows is { Count: > 0 } window)
            {
                var probs = new float[Heads * Stride];
                foreach (var (row, sink) in window)
                {
                    b.Read(Probabilities, probs, row * Heads * Stride);
                    sink(layer, probs, Stride);
                }
            }
        }
    }

    /// <summary>Runs rows through every layer; computes logits for the rows listed in logitRows.</summary>
    private void RunRows(IKvStep step, ReadOnlySpan<int> tokens, ReadOnlySpan<int> positions, ReadOnlySpan<int> logitRows)
    {
        var b = Backend;
        var c = Config;
        int rows = tokens.Length;
        foreach (var t in tokens)
            if ((uint)t >= (uint)c.VocabSize)
                throw new ArgumentOutOfRangeException(nameof(tokens), $"token id {t} is outside the vocabulary (0..{c.VocabSize - 1})");

        b.Embed(_embedding, tokens, _x);
        for (int l = 0; l < c.Layers; l++)
        {
            var layerWeights = _layers[l];
            b.RmsNorm(_x, layerWeights.AttentionNorm, _xb, rows, c.RmsNormEps);
            b.MatMuls(_xb, [layerWeights.Wq, layerWeights.Wk, layerWeights.Wv], [_q, _k, _v], rows);
            if (layerWeights.Bq != null) b.AddBias(_q, layerWeights.Bq, rows);
            if (layerWeights.Bk != null) b.AddBias(_k, layerWeights.Bk, rows);
            if (layerWeights.Bv != null) b.AddBias(_v, layerWeights.Bv, rows);
            b.Rope(_q, rows, c.Heads, c.HeadDim, positions, c.RopeLayout, _rope);
            b.Rope(_k, rows, c.KvHeads, c.HeadDim, positions, c.RopeLayout, _rope);
            if (KvObserver is { } observe)
            {
                var keys = new float[rows * c.KvDim];
                var values = new float[rows * c.KvDim];
                b.Read(_k, keys);
                b.Read(_v, values);
                observe(l, keys, values, rows);
            }
            if (_projection != null)
            {
                // MatryoshkaKV: cache coordinates, attend in them, un-project the output.
                _projection.ProjectKeysAndValues(l, _k, _v, _kProjected!, _vProjected!, rows);
                step.Write(b, l, _kProjected!, _vProjected!, rows, c.KvDim);
                _projection.ProjectQueries(l, _q, _qProjected!, rows);
                step.Attend(b, l, _qProjected!, _attProjected!, rows, c);
                _projection.Unproject(l, _attProjected!, _att, rows);
            }
            else
            {
                step.Write(b, l, _k, _v, rows, c.KvDim);
                step.Attend(b, l, _q, _att, rows, c);
            }
            b.MatMul(_att, layerWeights.Wo, _attOut, rows);
            b.Add(_x, _attOut, rows * c.Dim);

            b.RmsNorm(_x, layerWeights.FfnNorm, _xb, rows, c.RmsNormEps);
            b.MatMuls(_xb, [layerWeights.WGate, layerWeights.WUp], [_gate, _up], rows);
            b.SwiGlu(_gate, _up, rows * c.HiddenDim);
            b.MatMul(_gate, layerWeights.WDown, _down, rows);
            b.Add(_x, _down, rows * c.Dim);
        }
        if (logitRows.Length == 0) return;
        // Only the rows whose logits are wanted go through the final norm and the classifier.
        for (int i = 0; i < logitRows.Length; i++) b.Copy(_x, logitRows[i] * c.Dim, _xb, i * c.Dim, c.Dim);
        b.RmsNorm(_xb, _finalNorm, _x, logitRows.Length, c.RmsNormEps);
        b.MatMul(_x, _output, _logits, logitRows.Length);
    }

    public void Dispose()
    {
        _rowInfo?.Dispose();
        _probabilities?.Dispose();
        _projection?.Dispose();
        _kProjected?.Dispose();
        _vProjected?.Dispose();
        _qProjected?.Dispose();
        _attProjected?.Dispose();
        foreach (var d in _owned) d.Dispose();
        _owned.Clear();
    }
}
