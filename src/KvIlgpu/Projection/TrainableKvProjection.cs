using KvIlgpu.Training;
using MathNet.Numerics.LinearAlgebra;

namespace KvIlgpu.Projection;

/// <summary>MatryoshkaKV's projections while they are trained (SPEC section 5): per (layer, KV head) and for K and V, a
/// basis U = U0 C(X) (U0 the initial, PCA, basis; C the <see cref="CayleyMap"/> of a free matrix X, zero at the start)
/// and a mean mu, both parameters of the model (named kv_projection.layers.L.key.x, .key.mean, .value.x, .value.mean;
/// the base model stays frozen). At the ranks of the current step, keys become P (k - mu_K) and values P (v - mu_V) + mu_V
/// with P = U_r U_r^T, which is exactly what the engine caches (see <see cref="DeviceKvProjection"/>). Prepare recomputes
/// U and P from the parameters once per step; Forward and Backward then only read them.</summary>
internal sealed class TrainableKvProjection : IKvTransform
{
    private readonly KvProjection _init;
    private readonly int _d, _heads;
    private readonly TrainableLlama _model;
    // Per step, per (part, layer, head): C, M, U and the projector P.
    private readonly Matrix<double>[] _c, _m, _u;
    private readonly float[][] _p;
    private readonly float[][] _means;
    private readonly int[][] _ranks;

    public TrainableKvProjection(TrainableLlama model, KvProjection init)
    {
        _model = model;
        _init = init;
        _d = init.HeadDim;
        _heads = init.KvHeads;
        int n = 2 * init.Layers * _heads;
        _c = new Matrix<double>[n]; _m = new Matrix<double>[n]; _u = new Matrix<double>[n];
        _p = new float[n][];
        _means = new float[2 * init.Layers][];
        _ranks = [[.. init.AllRanks(KvPart.Key)], [.. init.AllRanks(KvPart.Value)]];
        for (int l = 0; l < init.Layers; l++)
            foreach (var part in new[] { KvPart.Key, KvPart.Value })
            {
                model.Parameters[SkewName(part, l)] = new float[_heads * _d * _d];
                model.Parameters[MeanName(part, l)] = init.Means(part).AsSpan(l * _heads * _d, _heads * _d).ToArray();
            }
        model.SyncParametersAdded();
        model.IsTrainable = name => name.StartsWith("kv_projection.", StringComparison.Ordinal);
        model.KvTransform = this;
    }

    public static string SkewName(KvPart part, int layer) => $"kv_projection.layers.{layer}.{PartName(part)}.x";
    public static string MeanName(KvPart part, int layer) => $"kv_projection.layers.{layer}.{PartName(part)}.mean";
    private static string PartName(KvPart part) => part == KvPart.Key ? "key" : "value";
    private int Index(KvPart part, int layer, int head) => ((int)part * _init.Layers + layer) * _heads + head;

    /// <summary>Sets this step's ranks ([layer, head] each) and recomputes every basis and projector from the parameters.</summary>
    public void Prepare(IReadOnlyList<int> keyRanks, IReadOnlyList<int> valueRanks)
    {
        SyncToHost();
        for (int i = 0; i < keyRanks.Count; i++) { _ranks[0][i] = keyRanks[i]; _ranks[1][i] = valueRanks[i]; }
        int d = _d;
        for (int l = 0; l < _init.Layers; l++)
            foreach (var part in new[] { KvPart.Key, KvPart.Value })
            {
                var x = _model.Parameters[SkewName(part, l)];
                _means[(int)part * _init.Layers + l] = _model.Parameters[MeanName(part, l)];
                for (int h = 0; h < _heads; h++)
                {
                    int idx = Index(part, l, h);
                    var (c, m) = CayleyMap.Forward(x.AsSpan(h * d * d, d * d), d);
                    var u0 = Initial(part, l, h);
                    var u = u0 * c;
                    (_c[idx], _m[idx], _u[idx]) = (c, m, u);
                    int r = _ranks[(int)part][l * _heads + h];
                    var ur = u.SubMatrix(0, d, 0, r);
                    var p = ur * ur.Transpose();
                    _p[idx] = new float[d * d];
                    for (int i = 0; i < d; i++) for (int j = 0; j < d; j++) _p[idx][i * d + j] = (float)p[i, j];
                }
            }
    }

    private Matrix<double> Initial(KvPart part, int layer, int head)
    {
        var b = _init.Bases(part).AsSpan(_init.HeadIndex(layer, head) * _d * _d, _d * _d).ToArray();
        return Matrix<double>.Build.Dense(_d, _d, (i, j) => b[i * _d + j]);
    }

    public TrainingTensor Forward(ITrainingOps ops, int layer, KvPart part, TrainingTensor x, int t)
    {
        int d = _d, width = _heads * d;
        var xs = new float[t * width];
        ops.ToHost(x, xs);
        var output = new float[t * width];
        var mean = _means[(int)part * _init.Layers + layer];
        var centred = new float[d];
        for (int r = 0; r < t; r++)
            for (int h = 0; h < _heads; h++)
            {
                var p = _p[Index(part, layer, h)];
                for (int j = 0; j < d; j++) centred[j] = xs[r * width + h * d + j] - mean[h * d + j];
                for (int i = 0; i < d; i++)
                {
                    float sum = part == KvPart.Value ? mean[h * d + i] : 0f;
                    for (int j = 0; j < d; j++) sum += p[i * d + j] * centred[j];
                    output[r * width + h * d + i] = sum;
                }
            }
        return ops.Wrap(output);
    }

    public TrainingTensor Backward(ITrainingOps ops, int layer, KvPart part, TrainingTensor x, TrainingTensor dOut, int t,
        GradientSet grads)
    {
        int d = _d, width = _heads * d;
        var xs = new float[t * width];
        var dy = new float[t * width];
        ops.ToHost(x, xs);
        ops.ToHost(dOut, dy);
        var dx = new float[t * width];
        var mean = _means[(int)part * _init.Layers + layer];
        var dSkew = new float[_heads * d * d];
        var dMean = new float[_heads * d];
        for (int h = 0; h < _heads; h++)
        {
            int idx = Index(part, layer, h);
            var p = _p[idx];
            var dp = Matrix<double>.Build.Dense(d, d);
            var dySum = new double[d];
            for (int r = 0; r < t; r++)
            {
                int o = r * width + h * d;
                for (int i = 0; i < d; i++)
                {
                    double g = dy[o + i];
                    dySum[i] += g;
                    if (g == 0) continue;
                    for (int j = 0; j < d; j++) dp[i, j] += g * (xs[o + j] - mean[h * d + j]);
                }
                // P is symmetric: dx = P dy.
                for (int j = 0; j < d; j++)
                {
                    float sum = 0;
                    for (int i = 0; i < d; i++) sum += p[i * d + j] * dy[o + i];
                    dx[o + j] = sum;
                }
            }
            // mu: the centring subtracts P mu from every row; values add mu back.
            for (int j = 0; j < d; j++)
            {
                double pSum = 0;
                for (int i = 0; i < d; i++) pSum += p[i * d + j] * dySum[i];
                dMean[h * d + j] = (float)(-pSum + (part == KvPart.Value ? dySum[j] : 0));
            }
            // P = U D U^T with D the first r ones: dU = (dP + dP^T) U D; U = U0 C: dC = U0^T dU.
            int rank = _ranks[(int)part][layer * _heads + h];
            var u = _u[idx];
            var du = (dp + dp.Transpose()) * u;
            for (int c = rank; c < d; c++) du.ClearColumn(c);
            var dc = Initial(part, layer, h).Transpose() * du;
            var dxSkew = CayleyMap.Backward(_c[idx], _m[idx], dc);
            for (int i = 0; i < d; i++) for (int j = 0; j < d; j++) dSkew[h * d * d + i * d + j] = (float)dxSkew[i, j];
        }
        using (var g = ops.Wrap(dSkew)) ops.Add(grads[SkewName(part, layer)], g, grads[SkewName(part, layer)]);
        using (var g = ops.Wrap(dMean)) ops.Add(grads[MeanName(part, layer)], g, grads[MeanName(part, layer)]);
        return ops.Wrap(dx);
    }

    /// <summary>Brings the projection's own parameters to the host (the frozen model's stay where they are).</summary>
    private void SyncToHost()
    {
        for (int l = 0; l < _init.Layers; l++)
            foreach (var part in new[] { KvPart.Key, KvPart.Value })
                foreach (var name in new[] { SkewName(part, l), MeanName(part, l) })
                    _model.Ops.ToHost(_model.Tensor(name), _model.Parameters[name]);
    }

    /// <summary>The trained projection (bases U = U0 C(X), means) at the given ranks.</summary>
    public KvProjection Export(IReadOnlyList<int> keyRanks, IReadOnlyList<int> valueRanks, string method = "trained")
    {
        SyncToHost();
        int d = _d, layers = _init.Layers;
        float[] Bases(KvPart part)
        {
            var all = new float[layers * _heads * d * d];
            for (int l = 0; l < layers; l++)
                for (int h = 0; h < _heads; h++)
                {
                    var (c, _) = CayleyMap.Forward(_model.Parameters[SkewName(part, l)].AsSpan(h * d * d, d * d), d);
                    var u = Initial(part, l, h) * c;
                    for (int i = 0; i < d; i++) for (int j = 0; j < d; j++) all[(_init.HeadIndex(l, h) * d + i) * d + j] = (float)u[i, j];
                }
            return all;
        }
        float[] Means(KvPart part) => [.. Enumerable.Range(0, layers).SelectMany(l => _model.Parameters[MeanName(part, l)])];
        return new KvProjection(method, layers, _heads, d, Bases(KvPart.Key), Means(KvPart.Key), Bases(KvPart.Value),
            Means(KvPart.Value), [.. keyRanks], [.. valueRanks]);
    }
}
