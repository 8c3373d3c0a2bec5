using KvIlgpu.Compute;

namespace KvIlgpu.Projection;

/// <summary>A <see cref="KvProjection"/> at its ranks on a compute backend, in MatryoshkaKV's coordinates (SPEC section 5):
/// each layer's keys (after RoPE) become U_K^T (k - mu_K) and its values U_V^T (v - mu_V), of which the cache stores the first
/// r_K and r_V (the rest are zero, so a cache as wide as the largest rank holds every head); each query becomes U_K^T q (not
/// centred: q . mu_K is the same for every key of a query, so the softmax does not see it), scored at the model's
/// 1/sqrt(head_dim); and each head's attention output, r_V coordinates, is un-projected to U_V o + mu_V before the output
/// projection (exact, since a query's probabilities sum to one). A query head uses its KV head's bases.</summary>
internal sealed class DeviceKvProjection : IDisposable
{
    private sealed record LayerMaps(DeviceBuffer Keys, DeviceBuffer KeyMeans, DeviceBuffer Queries, DeviceBuffer Values,
        DeviceBuffer ValueMeans, DeviceBuffer Outputs, DeviceBuffer OutputMeans) : IDisposable
    {
        public void Dispose()
        {
            Keys.Dispose(); KeyMeans.Dispose(); Queries.Dispose(); Values.Dispose(); ValueMeans.Dispose(); Outputs.Dispose();
            OutputMeans.Dispose();
        }
    }

    private readonly IComputeBackend _backend;
    private readonly List<LayerMaps> _layers = [];
    private readonly DeviceBuffer _zeros;
    private readonly int _kvHeads, _heads, _headDim;

    /// <param name="backend">Where the maps live.</param>
    /// <param name="p">The projection at its ranks.</param>
    /// <param name="queryHeads">The model's query heads per layer (a multiple of the projection's KV heads).</param>
    public DeviceKvProjection(IComputeBackend backend, KvProjection p, int queryHeads)
    {
        _backend = backend;
        _kvHeads = p.KvHeads;
        _heads = queryHeads;
        _headDim = p.HeadDim;
        int d = _headDim, group = queryHeads / p.KvHeads;
        _zeros = Upload(new float[queryHeads * d]);
        for (int l = 0; l < p.Layers; l++)
        {
            var keys = CoordinateMaps(p, KvPart.Key, l);
            var values = CoordinateMaps(p, KvPart.Value, l);
            var queries = new float[queryHeads * d * d];
            var outputs = new float[queryHeads * d * d];
            var outputMeans = new float[queryHeads * d];
            var unproject = UnprojectionMaps(p, l);
            var valueMeans = p.Means(KvPart.Value).AsSpan(l * _kvHeads * d, _kvHeads * d);
            for (int h = 0; h < queryHeads; h++)
            {
                int g = h / group;
                keys.AsSpan(g * d * d, d * d).CopyTo(queries.AsSpan(h * d * d));
                unproject.AsSpan(g * d * d, d * d).CopyTo(outputs.AsSpan(h * d * d));
                valueMeans.Slice(g * d, d).CopyTo(outputMeans.AsSpan(h * d));
            }
            _layers.Add(new LayerMaps(Upload(keys), Upload(p.Means(KvPart.Key).AsSpan(l * _kvHeads * d, _kvHeads * d)), Upload(queries),
                Upload(values), Upload(valueMeans), Upload(outputs), Upload(outputMeans)));
        }
    }

    private DeviceBuffer Upload(ReadOnlySpan<float> data)
    {
        var b = _backend.Allocate(data.Length);
        _backend.Write(b, data);
        return b;
    }

    /// <summary>Each KV head's map to its coordinates, [heads, d, d]: row c &lt; r is column c of U (U_r^T), later rows zero.</summary>
    public static float[] CoordinateMaps(KvProjection p, KvPart part, int layer)
    {
        int d = p.HeadDim;
        var maps = new float[p.KvHeads * d * d];
        for (int h = 0; h < p.KvHeads; h++)
        {
            var u = p.Bases(part).AsSpan(p.HeadIndex(layer, h) * d * d, d * d);
            int r = p.Rank(part, layer, h);
            for (int c = 0; c < r; c++)
                for (int i = 0; i < d; i++) maps[(h * d + c) * d + i] = u[i * d + c];
        }
        return maps;
    }

    /// <summary>Each KV head's value un-projection, [heads, d, d]: U_V with its columns from r_V on zero.</summary>
    private static float[] UnprojectionMaps(KvProjection p, int layer)
    {
        int d = p.HeadDim;
        var maps = new float[p.KvHeads * d * d];
        for (int h = 0; h < p.KvHeads; h++)
        {
            var u = p.Bases(KvPart.Value).AsSpan(p.HeadIndex(layer, h) * d * d, d * d);
            int r = p.Rank(KvPart.Value, layer, h);
            for (int i = 0; i < d; i++)
                for (int c = 0; c < r; c++) maps[(h * d + i) * d + c] = u[i * d + c];
        }
        return maps;
    }

    /// <summary>One layer's keys and values ([rows, kvHeads * headDim]) to their coordinates in keysOut and valuesOut.</summary>
    public void ProjectKeysAndValues(int layer, DeviceBuffer keys, DeviceBuffer values, DeviceBuffer keysOut, DeviceBuffer valuesOut,
        int rows)
    {
        var m = _layers[layer];
        _backend.ProjectHeads(keys, keysOut, rows, _kvHeads, _headDim, m.Keys, m.KeyMeans, _zeros);
        _backend.ProjectHeads(values, valuesOut, rows, _kvHeads, _headDim, m.Values, m.ValueMeans, _zeros);
    }

    /// <summary>One layer's queries ([rows, heads * headDim]) to their key coordinates.</summary>
    public void ProjectQueries(int layer, DeviceBuffer queries, DeviceBuffer output, int rows) =>
        _backend.ProjectHeads(queries, output, rows, _heads, _headDim, _layers[layer].Queries, _zeros, _zeros);

    /// <summary>One layer's attention outputs in value coordinates ([rows, heads * headDim]) back to features, mu_V added.</summary>
    public void Unproject(int layer, DeviceBuffer coordinates, DeviceBuffer output, int rows)
    {
        var m = _layers[layer];
        _backend.ProjectHeads(coordinates, output, rows, _heads, _headDim, m.Outputs, _zeros, m.OutputMeans);
    }

    public void Dispose()
    {
        foreach (var l in _layers) l.Dispose();
        _layers.Clear();
        _zeros.Dispose();
    }
}
