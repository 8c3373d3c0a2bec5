using KvIlgpu.Projection;

namespace KvIlgpu.Tests.Support;

/// <summary>Random projections for tests: orthonormal bases by Gram-Schmidt of random matrices (written here, not the
/// library's PCA), random means and ranks.</summary>
internal static class TestProjections
{
    public static float[] RandomOrthogonal(int d, Random rng)
    {
        var cols = new double[d][];
        for (int c = 0; c < d; c++)
        {
            var v = Enumerable.Range(0, d).Select(_ => rng.NextDouble() * 2 - 1).ToArray();
            for (int p = 0; p < c; p++)
            {
                double dot = 0;
                for (int i = 0; i < d; i++) dot += v[i] * cols[p][i];
                for (int i = 0; i < d; i++) v[i] -= dot * cols[p][i];
            }
            double norm = Math.Sqrt(v.Sum(x => x * x));
            cols[c] = v.Select(x => x / norm).ToArray();
        }
        var u = new float[d * d];
        for (int i = 0; i < d; i++) for (int c = 0; c < d; c++) u[i * d + c] = (float)cols[c][i];
        return u;
    }

    public static KvProjection Random(int layers, int kvHeads, int d, int seed, Func<Random, int>? rank = null)
    {
        var rng = new Random(seed);
        int heads = layers * kvHeads;
        float[] Bases() => [.. Enumerable.Range(0, heads).SelectMany(_ => RandomOrthogonal(d, rng))];
        float[] Means() => [.. Enumerable.Range(0, heads * d).Select(_ => (float)(rng.NextDouble() - 0.5))];
        int[] Ranks() => [.. Enumerable.Range(0, heads).Select(_ => rank?.Invoke(rng) ?? d)];
        return new KvProjection("random", layers, kvHeads, d, Bases(), Means(), Bases(), Means(), Ranks(), Ranks());
    }
}
