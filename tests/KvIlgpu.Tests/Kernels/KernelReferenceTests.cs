using KvIlgpu.Compute;
using KvIlgpu.Models;
using KvIlgpu.Tests.Support;

namespace KvIlgpu.Tests.Kernels;

/// <summary>Every backend op against a plain scalar C# reference on random inputs, including odd sizes that do not
/// divide the warp, tile or vector widths.</summary>
[Collection("backends")]
public class KernelReferenceTests
{
    private static float[] Random(Random rng, int n, float scale = 1f) =>
        Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1) * scale).ToArray();

    private static WeightTensor Weight(Random rng, int rows, int cols, WeightType type) =>
        WeightTensor.FromF32("w", rows, cols, Random(rng, rows * cols)).ConvertTo(type);

    public static TheoryData<string, WeightType, int, int, int> MatMulCases()
    {
        var data = new TheoryData<string, WeightType, int, int, int>();
        foreach (var b in new[] { "ilgpu-cpu", "ilgpu-cpu-wide", "cpu" })
            foreach (var t in new[] { WeightType.F32, WeightType.F16, WeightType.BF16 })
            {
                data.Add(b, t, 1, 37, 77);     // GEMV, odd sizes
                data.Add(b, t, 3, 64, 129);    // few-row GEMV
                data.Add(b, t, 19, 45, 70);    // tiled GEMM with ragged tiles
            }
        return data;
    }

    [Theory]
    [MemberData(nameof(MatMulCases))]
    public void MatMul_matches_reference(string backendName, WeightType type, int rows, int n, int k)
    {
        var rng = new Random(rows * 1000 + n + k);
        var b = Backends.Get(backendName);
        var w = Weight(rng, n, k, type);
        var x = Random(rng, rows * k);
        var wf = w.ToFloat(); // the reference uses the same (rounded) weight values
        var expected = new float[rows * n];
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int i = 0; i < k; i++) s += (double)x[r * k + i] * wf[j * k + i];
                expected[r * n + j] = (float)s;
            }
        lock (Backends.Lock)
        {
            using var dw = b.Upload(w);
            using var dx = b.Upload(x);
            using var dy = b.Allocate(rows * n);
            b.MatMul(dx, dw, dy, rows);
            Compare.Close(b.ToArray(dy), expected, 1e-5, "matmul");
        }
    }

    [Theory]
    [MemberData(nameof(Backends.AllShapes), MemberType = typeof(Backends))]
    public void RmsNorm_matches_reference(string backendName)
    {
        var rng = new Random(1);
        var b = Backends.Get(backendName);
        int rows = 3, dim = 83;
        var x = Random(rng, rows * dim, 3f);
        var w = Random(rng, dim);
        var expected = new float[rows * dim];
        for (int r = 0; r < rows; r++)
        {
            double ss = 0;
            for (int i = 0; i < dim; i++) ss += x[r * dim + i] * x[r * dim + i];
            double scale = 1 / Math.Sqrt(ss / dim + 1e-5);
            for (int i = 0; i < dim; i++) expected[r * dim + i] = (float)(x[r * dim + i] * scale * w[i]);
        }
        lock (Backends.Lock)
        {
            using var dx = b.Upload(x);
            using var dw = b.Upload(WeightTensor.FromF32("norm", 1, dim, w));
            using var dy = b.Allocate(rows * dim);
            b.RmsNorm(dx, dw, dy, rows, 1e-5f);
            Compare.Close(b.ToArray(dy), expected, 1e-5, "rmsnorm");
        }
    }

    [Theory]
    [InlineData("ilgpu-cpu", RopeLayout.InterleavedPairs)]
    [InlineData("ilgpu-cpu", RopeLayout.HalfSplit)]
    [InlineData("cpu", RopeLayout.InterleavedPairs)]
    [InlineData("cpu", RopeLayout.HalfSplit)]
    public void Rope_matches_reference_for_both_layouts_and_llama3_scaling(string backendName, RopeLayout layout)
    {
        var rng = new Random(2);
        var b = Backends.Get(backendName);
        var config = new ModelConfig
        {
            Dim = 40, HiddenDim = 8, Layers = 1, Heads = 2, KvHeads = 1, VocabSize = 4, MaxSeqLen = 300, RopeTheta = 500000f,
            RopeScaling = new RopeScaling("llama3", 8f, 1f, 4f, 64),
        }.Validated("test");
        int rows = 3, heads = 2, d = config.HeadDim;
        int[] positions = [0, 7, 299];
        var x = Random(rng, rows * heads * d);
        // Reference: HF's llama3 frequency rule and rotation, written out in double.
        var freqs = new double[d / 2];
        for (int i = 0; i < d / 2; i++)
        {
            double f = 1.0 / Math.Pow(500000.0, 2.0 * i / d);
            double wavelen = 2 * Math.PI / f, low = 64 / 1.0, high = 64 / 4.0;
            if (wavelen > low) f /= 8;
            else if (wavelen >= high) { double sm = (64 / wavelen - 1) / (4 - 1); f = (1 - sm) * f / 8 + sm * f; }
            freqs[i] = f;
        }
        var expected = (float[])x.Clone();
        for (int r = 0; r < rows; r++)
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < d / 2; i++)
                {
                    int b0 = (r * heads + h) * d;
                    int i0 = layout == RopeLayout.InterleavedPairs ? b0 + 2 * i : b0 + i;
                    int i1 = layout == RopeLayout.InterleavedPairs ? i0 + 1 : i0 + d / 2;
                    double a = positions[r] * freqs[i];
                    expected[i0] = (float)(x[i0] * Math.Cos(a) - x[i1] * Math.Sin(a));
                    expected[i1] = (float)(x[i0] * Math.Sin(a) + x[i1] * Math.Cos(a));
                }
        lock (Backends.Lock)
        {
            using var rope = b.UploadRope(new RopeTable(config));
            using var dx = b.Upload(x);
            b.Rope(dx, rows, heads, d, positions, layout, rope);
            // Angles up to 300 rad in f32 carry ~3e-5 absolute error, as in every f32 implementation.
            Compare.Close(b.ToArray(dx), expected, 1e-4, "rope");
        }
    }

    [Theory]
    [MemberData(nameof(Backends.AllShapes), MemberType = typeof(Backends))]
    public void Elementwise_ops_and_embedding_match_reference(string backendName)
    {
        var rng = new Random(3);
        var b = Backends.Get(backendName);
        int n = 101;
        var g = Random(rng, n, 4f); var u = Random(rng, n); var bias = Random(rng, 7);
        var table = Weight(rng, 11, 13, WeightType.BF16);
        lock (Backends.Lock)
        {
            using var dg = b.Upload(g); using var du = b.Upload(u);
            b.SwiGlu(dg, du, n);
            Compare.Close(b.ToArray(dg), g.Select((v, i) => (float)(v / (1 + Math.Exp(-v)) * u[i])).ToArray(), 1e-5, "swiglu");
            using var dx = b.Upload(g); using var dy = b.Upload(u);
            b.Add(dx, dy, n);
            Compare.Close(b.ToArray(dx), g.Select((v, i) => v + u[i]).ToArray(), 1e-6, "add");
            var xb = Random(rng, 3 * 7);
            using var dxb = b.Upload(xb);
            using var dbias = b.Upload(WeightTensor.FromF32("bias", 1, 7, bias));
            b.AddBias(dxb, dbias, 3);
            Compare.Close(b.ToArray(dxb), xb.Select((v, i) => v + bias[i % 7]).ToArray(), 1e-6, "bias");
            using var dt = b.Upload(table);
            using var de = b.Allocate(3 * 13);
            int[] tokens = [10, 0, 5];
            b.Embed(dt, tokens, de);
            var tf = table.ToFloat();
            Compare.Close(b.ToArray(de), tokens.SelectMany(t => tf.Skip(t * 13).Take(13)).ToArray(), 0, "embedding");
            var logits = Random(rng, 300);
            logits[123] = 5f; logits[200] = 5f; // a tie: the first index wins
            using var dl = b.Upload(logits);
            Assert.Equal(123, b.ArgMax(dl, 0, 300));
            Assert.Equal(200 - 150, b.ArgMax(dl, 150, 150));
        }
    }

    [Theory]
    [InlineData("ilgpu-cpu", 6, 2, 1, 0, 10)]    // decode, GQA, first position
    [InlineData("ilgpu-cpu", 6, 2, 1, 40, 10)]   // decode, GQA
    [InlineData("ilgpu-cpu-wide", 4, 4, 5, 17, 10)] // chunked prefill, MHA
    [InlineData("cpu", 6, 2, 1, 40, 10)]
    [InlineData("cpu", 4, 4, 5, 17, 10)]
    // The managed backend's blocks of four queries (head widths of whole 8s): GQA groups of three (blocks spanning rows),
    // four and eight, MHA (four rows a block), and a chunk that starts at the first position.
    [InlineData("cpu", 6, 2, 5, 17, 16)]
    [InlineData("cpu", 8, 2, 7, 0, 64)]
    [InlineData("cpu", 8, 1, 3, 9, 24)]
    [InlineData("cpu", 4, 4, 6, 30, 64)]
    public void Causal_attention_matches_reference(string backendName, int heads, int kvHeads, int rows, int start, int d)
    {
        var rng = new Random(heads * 100 + rows + start + d);
        var b = Backends.Get(backendName);
        int kvDim = kvHeads * d, capacity = start + rows + 3, layerOffset = capacity * kvDim; // second "layer"
        var q = Random(rng, rows * heads * d, 2f);
        var keys = Random(rng, 2 * capacity * kvDim, 2f);
        var values = Random(rng, 2 * capacity * kvDim);
        var expected = new float[rows * heads * d];
        for (int r = 0; r < rows; r++)
            for (int h = 0; h < heads; h++)
            {
                int kvh = h / (heads / kvHeads), len = start + r + 1;
                var s = new double[len];
                for (int t = 0; t < len; t++)
                {
                    for (int i = 0; i < d; i++) s[t] += q[(r * heads + h) * d + i] * keys[layerOffset + t * kvDim + kvh * d + i];
                    s[t] /= Math.Sqrt(d);
                }
                double max = s.Max(), sum = s.Sum(v => Math.Exp(v - max));
                for (int i = 0; i < d; i++)
                {
                    double acc = 0;
                    for (int t = 0; t < len; t++) acc += Math.Exp(s[t] - max) / sum * values[layerOffset + t * kvDim + kvh * d + i];
                    expected[(r * heads + h) * d + i] = (float)acc;
                }
            }
        lock (Backends.Lock)
        {
            using var dq = b.Upload(q); using var dk = b.Upload(keys); using var dv = b.Upload(values);
            using var o = b.Allocate(rows * heads * d);
            b.Attention(dq, dk, dv, o, new AttentionShape(rows, start, heads, kvHeads, d, layerOffset));
            Compare.Close(b.ToArray(o), expected, 1e-5, "attention");
        }
    }
}
