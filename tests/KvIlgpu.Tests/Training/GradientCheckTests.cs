using KvIlgpu.Models;
using G = KvIlgpu.Training.ForwardBackward;

namespace KvIlgpu.Tests.Training;

/// <summary>Every backward pass against central finite differences of its forward pass. The loss is a random linear
/// functional of the output (so dLoss/dOutput is that random vector); a sample of coordinates of every input is probed.</summary>
public class GradientCheckTests
{
    internal static float[] R(Random rng, int n, float scale = 1f) => Enumerable.Range(0, n).Select(_ =>
        (float)(rng.NextDouble() * 2 - 1) * scale).ToArray();

    internal static double Dot(float[] a, float[] b)
    {
        double s = 0; for (int i = 0; i < a.Length; i++) s += (double)a[i] * b[i]; return s;
    }

    /// <summary>Compares analytic gradient entries with (L(x + e) - L(x - e)) / 2e at probed coordinates.</summary>
    internal static void Check(string what, float[] x, float[] analytic, Func<double> loss, Random rng, float eps = 1e-2f,
        double tol = 2e-2)
    {
        foreach (int i in Enumerable.Range(0, Math.Min(24, x.Length)).Select(_ => rng.Next(x.Length)).Distinct())
        {
            float keep = x[i];
            x[i] = keep + eps; double up = loss();
            x[i] = keep - eps; double down = loss();
            x[i] = keep;
            double numeric = (up - down) / (2 * eps);
            Assert.True(Math.Abs(numeric - analytic[i]) <= tol * Math.Max(1, Math.Abs(numeric)),
                $"{what}[{i}]: analytic {analytic[i]:G5}, finite difference {numeric:G5}");
        }
    }

    [Fact]
    public void MatMul()
    {
        var rng = new Random(1);
        int m = 3, k = 7, n = 5;
        var x = R(rng, m * k); var w = R(rng, n * k); var c = R(rng, m * n);
        double L() { var y = new float[m * n]; G.MatMul(x, w, y, m, k, n); return Dot(y, c); }
        var dx = new float[m * k]; var dw = new float[n * k];
        G.MatMulBackward(x, w, c, dx, dw, m, k, n);
        Check("dx", x, dx, L, rng); Check("dw", w, dw, L, rng);
    }

    [Fact]
    public void RmsNorm()
    {
        var rng = new Random(2);
        int rows = 2, d = 9;
        var x = R(rng, rows * d, 2); var w = R(rng, d); var c = R(rng, rows * d);
        double L() { var y = new float[rows * d]; G.RmsNorm(x, w, y, rows, 1e-5f); return Dot(y, c); }
        var dx = new float[rows * d]; var dw = new float[d];
        G.RmsNormBackward(x, w, c, dx, dw, rows, 1e-5f);
        Check("dx", x, dx, L, rng, eps: 1e-3f); Check("dw", w, dw, L, rng, eps: 1e-3f);
    }

    [Theory]
    [InlineData(RopeLayout.InterleavedPairs)]
    [InlineData(RopeLayout.HalfSplit)]
    public void Rope(RopeLayout layout)
    {
        var rng = new Random(3);
        var config = TestModels_Config();
        var table = new RopeTable(config);
        int rows = 3, heads = 2, d = config.HeadDim;
        int[] pos = [0, 5, 17];
        var x = R(rng, rows * heads * d); var c = R(rng, x.Length);
        double L() { var y = (float[])x.Clone(); G.Rope(y, rows, heads, d, pos, table, layout); return Dot(y, c); }
        var dx = (float[])c.Clone();
        G.Rope(dx, rows, heads, d, pos, table, layout, sign: -1);
        Check("dx", x, dx, L, rng, eps: 1e-3f);
    }

    private static ModelConfig TestModels_Config() => new ModelConfig
    {
        Dim = 16, HiddenDim = 8, Layers = 1, Heads = 2, KvHeads = 1,
        VocabSize = 4, MaxSeqLen = 32
    }.Validated("test");

    [Fact]
    public void SwiGlu()
    {
        var rng = new Random(4);
        int n = 11;
        var g = R(rng, n, 3); var u = R(rng, n); var c = R(rng, n);
        double L() { var y = new float[n]; G.SwiGlu(g, u, y); return Dot(y, c); }
        var dg = new float[n]; var du = new float[n];
        G.SwiGluBackward(g, u, c, dg, du);
        Check("dg", g, dg, L, rng, eps: 1e-3f); Check("du", u, du, L, rng, eps: 1e-3f);
    }

    [Theory]
    [InlineData(4, 2)]
    [InlineData(2, 2)]
    public void CausalGqaAttention(int heads, int kvHeads)
    {
        var rng = new Random(heads + kvHeads);
        int t = 5, d = 4;
        var q = R(rng, t * heads * d); var k = R(rng, t * kvHeads * d); var v = R(rng, t * kvHeads * d); var c = R(rng, t * heads * d);
        var probs = new float[heads * t * t];
        double L()
        {
            var o = new float[t * heads * d];
            G.Attention(q, k, v, o, new float[heads * t * t], t, heads, kvHeads, d);
            return Dot(o, c);
        }
        G.Attention(q, k, v, new float[t * heads * d], probs, t, heads, kvHeads, d);
        var dq = new float[q.Length]; var dk = new float[k.Length]; var dv = new float[v.Length];
        G.AttentionBackward(q, k, v, probs, c, dq, dk, dv, t, heads, kvHeads, d);
        Check("dq", q, dq, L, rng, eps: 1e-3f); Check("dk", k, dk, L, rng, eps: 1e-3f); Check("dv", v, dv, L, rng, eps: 1e-3f);
    }

    [Fact]
    public void Embedding_cross_entropy_and_kl()
    {
        var rng = new Random(6);
        int vocab = 7, dim = 3, rows = 4;
        int[] tokens = [1, 5, 1, 6];
        var table = R(rng, vocab * dim); var c = R(rng, rows * dim);
        double L() => Dot(tokens.SelectMany(t => table.Skip(t * dim).Take(dim)).ToArray(), c);
        var dTable = new float[table.Length];
        G.EmbeddingBackward(tokens, c, dTable, dim);
        Check("dTable", table, dTable, L, rng, eps: 1e-3f);

        var logits = R(rng, rows * vocab, 3);
        int[] targets = [0, 3, 6, 2];
        var dLogits = new float[logits.Length];
        G.CrossEntropy(logits, targets, dLogits, vocab);
        Check("dLogits (cross-entropy)", logits, dLogits, () => G.CrossEntropy(logits, targets, new float[logits.Length], vocab), rng,
            eps: 1e-3f);

        var teacher = R(rng, rows * vocab, 3);
        var dStudent = new float[logits.Length];
        float kl = G.KlDivergence(teacher, logits, dStudent, vocab);
        Assert.True(kl > 0);
        Assert.Equal(0, G.KlDivergence(teacher, teacher, new float[logits.Length], vocab), 5);
        Check("dStudent (KL)", logits, dStudent, () => G.KlDivergence(teacher, logits, new float[logits.Length], vocab), rng, eps: 1e-3f);
    }
}
