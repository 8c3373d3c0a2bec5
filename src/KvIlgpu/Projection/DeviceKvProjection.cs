using KvIlgpu.Compute;

namespace KvIlgpu.Projection;

/// <summary>A <see cref="KvProjection"/> at its ranks on a compute backend, applied to each layer's keys (after RoPE) and
/// values before they are cached. Until the cache stores narrower heads (compact KV storage), a head keeps its full
/// width and holds the projection written back in the original coordinates: keys U_r U_r^T (k - mu_K), values
/// U_r U_r^T (v - mu_V) + mu_V. Attention over them is exactly MatryoshkaKV's: q . U_r U_r^T (k - mu_K) is the score of the
/// projected query U_r^T q against the stored coordinates U_r^T (k - mu_K), and since each query's probabilities sum to
/// one, the output over those values is the un-projection U_r (softmax V') plus mu_V.</summary>
internal sealed class DeviceKvProjection : IDisposable
{
    private readonly IComputeBackend _backend;
    private readonly List<(DeviceBuffer KeyMaps, DeviceBuffer KeyMeans, DeviceBuffer ValueMaps, DeviceBuffer ValueMeans)> _layers = [];
    private readonly int _heads, _headDim;

    public DeviceKvProjection(IComputeBackend backend, KvProjection p)
    {
        _backend = backend;
        _heads = p.KvHeads;
        _headDim = p.HeadDim;
        int width = _heads * _headDim;
        for (int l = 0; l < p.Layers; l++)
            _layers.Add((Upload(ProjectorMaps(p, KvPart.Key, l)), Upload(p.Means(KvPart.Key).AsSpan(l * width, width)),
                Upload(ProjectorMaps(p, KvPart.Value, l)), Upload(p.Means(KvPart.Value).AsSpan(l * width, width))));
    }

    private DeviceBuffer Upload(ReadOnlySpan<float> data)
    {
        var b = _backend.Allocate(data.Length);
        _backend.Write(b, data);
        return b;
    }

    /// <summary>Each head's projector U_r U_r^T of one layer, [heads, d, d].</summary>
    public static float[] ProjectorMaps(KvProjection p, KvPart part, int layer)
    {
        int d = p.HeadDim;
        var maps = new float[p.KvHeads * d * d];
        for (int h = 0; h < p.KvHeads; h++)
        {
            var u = p.Bases(part).AsSpan(p.HeadIndex(layer, h) * d * d, d * d);
            int r = p.Rank(part, layer, h);
            for (int i = 0; i < d; i++)
                for (int j = 0; j < d; j++)
                {
                    double sum = 0;
                    for (int c = 0; c < r; c++) sum += (double)u[i * d + c] * u[j * d + c];
                    maps[(h * d + i) * d + j] = (float)sum;
                }
        }
        return maps;
    }

    /// <summary>Projects one layer's keys and values ([rows, kvHeads * headDim]) into keysOut and valuesOut.</summary>
    public void Apply(int layer, DeviceBuffer keys, DeviceBuffer values, DeviceBuffer keysOut, DeviceBuffer valuesOut, int rows)
    {
        var (km, kmu, vm, vmu) = _layers[layer];
        _backend.ProjectHeads(keys, keysOut, rows, _heads, _headDim, km, kmu, addMean: false);
        _backend.ProjectHeads(values, valuesOut, rows, _heads, _headDim, vm, vmu, addMean: true);
    }

    public void Dispose()
    {
        foreach (var (a, b, c, d) in _layers) { a.Dispose(); b.Dispose(); c.Dispose(); d.Dispose(); }
        _layers.Clear();
    }
}
