using KvIlgpu.Engine;
using MathNet.Numerics.LinearAlgebra;

namespace KvIlgpu.Projection;

/// <summary>MatryoshkaKV's initialisation (SPEC section 5): runs the model over calibration text, collects the keys
/// (after RoPE) and values of every (layer, KV head), and takes as each head's basis the eigenvectors of the centred
/// covariance E[x x^T] - mu mu^T, by eigenvalue descending, with the means mu. Each eigenvector's sign is fixed (its
/// largest-magnitude component positive), then the last column's sign is flipped where needed so the determinant is
/// +1. The symmetric eigendecomposition is MathNet.Numerics'.</summary>
public static class PcaCalibrator
{
    /// <summary>Calibrates from token windows (each run from an empty cache, at most the model's context long) at full
    /// rank; progress reports windows done of the total.</summary>
    public static KvProjection Calibrate(InferenceEngine engine, IReadOnlyList<int[]> windows,
        IProgress<(int Done, int Total)>? progress = null)
    {
        var c = engine.Config;
        var model = engine.Model;
        int d = c.HeadDim, heads = c.Layers * c.KvHeads;
        var stats = new[] { new Moments(heads, d), new Moments(heads, d) };
        model.KvObserver = (layer, keys, values, rows) =>
        {
            stats[0].Add(layer * c.KvHeads, c.KvHeads, keys, rows);
            stats[1].Add(layer * c.KvHeads, c.KvHeads, values, rows);
        };
        try
        {
            for (int w = 0; w < windows.Count; w++)
            {
                using var cache = model.CreateCache(windows[w].Length);
                model.Forward(cache, windows[w]);
                progress?.Report((w + 1, windows.Count));
            }
        }
        finally { model.KvObserver = null; }
        if (stats[0].Count == 0) throw new ArgumentException("no calibration tokens", nameof(windows));
        var parts = stats.Select(s =>
        {
            var bases = new float[heads * d * d];
            var means = new float[heads * d];
            for (int h = 0; h < heads; h++)
            {
                var (basis, mean) = s.Pca(h);
                basis.CopyTo(bases, h * d * d);
                mean.CopyTo(means, h * d);
            }
            return (bases, means);
        }).ToArray();
        var full = Enumerable.Repeat(d, heads).ToArray();
        return new KvProjection("pca", c.Layers, c.KvHeads, d, parts[0].bases, parts[0].means, parts[1].bases, parts[1].means, full,
            (int[])full.Clone()).Checked("PCA calibration");
    }

    /// <summary>Splits a token stream into consecutive windows of at most length tokens, using at most maxTokens of it.</summary>
    public static List<int[]> Windows(IReadOnlyList<int> tokens, int length, int maxTokens)
    {
        var windows = new List<int[]>();
        int total = Math.Min(tokens.Count, maxTokens);
        for (int start = 0; start < total; start += length)
            windows.Add(tokens.Skip(start).Take(Math.Min(length, total - start)).ToArray());
        return windows;
    }

    /// <summary>The principal basis of a symmetric covariance (row-major d x d): eigenvectors as columns by eigenvalue
    /// descending, signs fixed as the class describes, determinant +1.</summary>
    public static float[] PrincipalBasis(double[] covariance, int d)
    {
        var evd = Matrix<double>.Build.Dense(d, d, (i, j) => covariance[i * d + j]).Evd(Symmetricity.Symmetric);
        var order = Enumerable.Range(0, d).OrderByDescending(i => evd.EigenValues[i].Real).ToArray();
        var u = Matrix<double>.Build.Dense(d, d);
        for (int c = 0; c < d; c++)
        {
            var v = evd.EigenVectors.Column(order[c]);
            int big = v.AbsoluteMaximumIndex();
            u.SetColumn(c, v[big] < 0 ? -v : v);
        }
        if (u.Determinant() < 0) u.SetColumn(d - 1, -u.Column(d - 1));
        var basis = new float[d * d];
        for (int i = 0; i < d; i++) for (int j = 0; j < d; j++) basis[i * d + j] = (float)u[i, j];
        return basis;
    }

    /// <summary>Running sums of x and x x^T per head.</summary>
    private sealed class Moments(int heads, int d)
    {
        private readonly double[] _sum = new double[heads * d], _outer = new double[heads * d * d];
        public long Count { get; private set; }

        public void Add(int firstHead, int kvHeads, float[] rows, int count)
        {
            for (int r = 0; r < count; r++)
                for (int h = 0; h < kvHeads; h++)
                {
                    var x = rows.AsSpan((r * kvHeads + h) * d, d);
                    int head = firstHead + h;
                    for (int i = 0; i < d; i++)
                    {
                        _sum[head * d + i] += x[i];
                        var outer = _outer.AsSpan((head * d + i) * d, d);
                        double xi = x[i];
                        for (int j = 0; j < d; j++) outer[j] += xi * x[j];
                    }
                }
            if (firstHead == 0) Count += count;
        }

        public (float[] Basis, float[] Mean) Pca(int head)
        {
            var mean = new double[d];
            for (int i = 0; i < d; i++) mean[i] = _sum[head * d + i] / Count;
            var cov = new double[d * d];
            for (int i = 0; i < d; i++)
                for (int j = 0; j < d; j++) cov[i * d + j] = _outer[(head * d + i) * d + j] / Count - mean[i] * mean[j];
            return (PrincipalBasis(cov, d), mean.Select(m => (float)m).ToArray());
        }
    }
}
