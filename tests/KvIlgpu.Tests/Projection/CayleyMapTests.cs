using KvIlgpu.Projection;

namespace KvIlgpu.Tests.Projection;

public class CayleyMapTests
{
    [Fact]
    public void The_cayley_map_is_orthogonal_and_its_gradient_matches_finite_differences()
    {
        const int d = 6;
        var rng = new Random(4);
        var x = Enumerable.Range(0, d * d).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
        var g = Enumerable.Range(0, d * d).Select(_ => rng.NextDouble() - 0.5).ToArray();
        var (c, m) = CayleyMap.Forward(x, d);
        var flat = new float[d * d];
        for (int i = 0; i < d; i++) for (int j = 0; j < d; j++) flat[i * d + j] = (float)c[i, j];
        Assert.True(KvProjection.OrthogonalityError(flat, d) < 1e-6);
        Assert.Equal(1, c.Determinant(), 9);
        // L(X) = sum G .* C(X); dL/dX from Backward against central differences.
        double Loss(float[] xs)
        {
            var (cc, _) = CayleyMap.Forward(xs, d);
            double s = 0;
            for (int i = 0; i < d; i++) for (int j = 0; j < d; j++) s += g[i * d + j] * cc[i, j];
            return s;
        }
        var gradC = MathNet.Numerics.LinearAlgebra.Matrix<double>.Build.Dense(d, d, (i, j) => g[i * d + j]);
        var grad = CayleyMap.Backward(c, m, gradC);
        const float h = 1e-3f;
        for (int k = 0; k < d * d; k++)
        {
            var plus = (float[])x.Clone(); plus[k] += h;
            var minus = (float[])x.Clone(); minus[k] -= h;
            double numeric = (Loss(plus) - Loss(minus)) / (2 * h);
            Assert.True(Math.Abs(numeric - grad[k / d, k % d]) < 1e-4, $"entry {k}: numeric {numeric}, analytic {grad[k / d, k % d]}");
        }
        var (identity, _) = CayleyMap.Forward(new float[d * d], d);
        for (int i = 0; i < d; i++) for (int j = 0; j < d; j++) Assert.Equal(i == j ? 1 : 0, identity[i, j], 12);
    }
}
