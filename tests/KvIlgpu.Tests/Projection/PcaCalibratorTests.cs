using KvIlgpu.Compute;
using KvIlgpu.Engine;
using KvIlgpu.Projection;
using KvIlgpu.Tests.Support;

namespace KvIlgpu.Tests.Projection;

public class PcaCalibratorTests
{
    /// <summary>Cyclic Jacobi eigenvalue iteration for a symmetric matrix (a textbook method, written here so the library's
    /// MathNet eigensolver is checked against something else): eigenvalues and eigenvectors as columns.</summary>
    private static (double[] Values, double[,] Vectors) Jacobi(double[,] a0)
    {
        int n = a0.GetLength(0);
        var a = (double[,])a0.Clone();
        var v = new double[n, n];
        for (int i = 0; i < n; i++) v[i, i] = 1;
        for (int sweep = 0; sweep < 100; sweep++)
        {
            double off = 0;
            for (int p = 0; p < n; p++) for (int q = p + 1; q < n; q++) off += a[p, q] * a[p, q];
            if (off < 1e-26) break;
            for (int p = 0; p < n; p++)
                for (int q = p + 1; q < n; q++)
                {
                    if (Math.Abs(a[p, q]) < 1e-300) continue;
                    double theta = (a[q, q] - a[p, p]) / (2 * a[p, q]);
                    double t = Math.Sign(theta) / (Math.Abs(theta) + Math.Sqrt(theta * theta + 1));
                    if (theta == 0) t = 1;
                    double c = 1 / Math.Sqrt(t * t + 1), s = t * c;
                    for (int k = 0; k < n; k++)
                    {
                        double akp = a[k, p], akq = a[k, q];
                        a[k, p] = c * akp - s * akq;
                        a[k, q] = s * akp + c * akq;
                    }
                    for (int k = 0; k < n; k++)
                    {
                        double apk = a[p, k], aqk = a[q, k];
                        a[p, k] = c * apk - s * aqk;
                        a[q, k] = s * apk + c * aqk;
                    }
                    for (int k = 0; k < n; k++)
                    {
                        double vkp = v[k, p], vkq = v[k, q];
                        v[k, p] = c * vkp - s * vkq;
                        v[k, q] = s * vkp + c * vkq;
                    }
                }
        }
        return (Enumerable.Range(0, n).Select(i => a[i, i]).ToArray(), v);
    }

    /// <summary>Asserts basis (row-major d x d, columns by eigenvalue descending) spans the same eigenvectors as Jacobi's
    /// of the covariance, column by column up to sign, with determinant +1.</summary>
    private static void SameAsJacobi(float[] basis, double[,] covariance, int d)
    {
        var (values, vectors) = Jacobi(covariance);
        var order = Enumerable.Range(0, d).OrderByDescending(i => values[i]).ToArray();
        for (int c = 0; c < d; c++)
        {
            double dot = 0;
            for (int i = 0; i < d; i++) dot += basis[i * d + c] * vectors[i, order[c]];
            Assert.True(Math.Abs(Math.Abs(dot) - 1) < 1e-4, $"column {c}: |<library, Jacobi>| = {Math.Abs(dot)}");
        }
        Assert.True(KvProjection.OrthogonalityError(basis, d) < 1e-5);
        var m = MathNet.Numerics.LinearAlgebra.Matrix<double>.Build.Dense(d, d, (i, j) => basis[i * d + j]);
        Assert.Equal(1, m.Determinant(), 4);
    }

    [Theory]
    [InlineData(4, 1)]
    [InlineData(16, 2)]
    [InlineData(64, 3)]
    public void The_principal_basis_of_a_random_covariance_matches_an_independent_eigensolver(int d, int seed)
    {
        var rng = new Random(seed);
        // A random covariance with well-separated eigenvalues: B B^T plus a spread diagonal.
        var b = new double[d, d];
        for (int i = 0; i < d; i++) for (int j = 0; j < d; j++) b[i, j] = rng.NextDouble() - 0.5;
        var cov = new double[d, d];
        var flat = new double[d * d];
        for (int i = 0; i < d; i++)
            for (int j = 0; j < d; j++)
            {
                double s = i == j ? 0.1 * (i + 1) : 0;
                for (int k = 0; k < d; k++) s += b[i, k] * b[j, k];
                cov[i, j] = s;
                flat[i * d + j] = s;
            }
        SameAsJacobi(PcaCalibrator.PrincipalBasis(flat, d), cov, d);
    }

    [Fact]
    public void Calibration_takes_each_heads_mean_and_principal_axes_of_the_reference_keys_and_values()
    {
        var c = TestModels.Config(dim: 32, hidden: 48, layers: 2, heads: 4, kvHeads: 2, seq: 48);
        var w = TestModels.Random(c, seed: 6);
        var rng = new Random(2);
        var windows = Enumerable.Range(0, 3).Select(_ => Enumerable.Range(0, 48).Select(_ => rng.Next(c.VocabSize)).ToArray()).ToList();
        using var engine = InferenceEngine.FromWeights(w, new EngineOptions(DeviceKind.Cpu));
        var p = PcaCalibrator.Calibrate(engine, windows);
        int d = c.HeadDim;
        for (int l = 0; l < c.Layers; l++)
            foreach (var part in new[] { KvPart.Key, KvPart.Value })
            {
                var rows = new List<double[]>();
                foreach (var window in windows)
                {
                    var reference = ReferenceLlama.From(w);
                    foreach (var t in window) reference.Step(t);
                    rows.AddRange(part == KvPart.Key ? reference.CachedKeys(l) : reference.CachedValues(l));
                }
                for (int h = 0; h < c.KvHeads; h++)
                {
                    var mean = Enumerable.Range(0, d).Select(i => rows.Average(r => r[h * d + i])).ToArray();
                    var cov = new double[d, d];
                    foreach (var r in rows)
                        for (int i = 0; i < d; i++)
                            for (int j = 0; j < d; j++) cov[i, j] += (r[h * d + i] - mean[i]) * (r[h * d + j] - mean[j]) / rows.Count;
                    var got = p.Mean(part, l, h);
                    for (int i = 0; i < d; i++) Assert.Equal(mean[i], got[i], 4);
                    SameAsJacobi(p.Basis(part, l, h), cov, d);
                }
            }
    }
}
