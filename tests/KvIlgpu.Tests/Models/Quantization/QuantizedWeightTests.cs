using KvIlgpu.Compute;
using KvIlgpu.Models;
using KvIlgpu.Models.Loading;
using KvIlgpu.Models.Quantization;
using KvIlgpu.Tests.Support;

namespace KvIlgpu.Tests.Models.Quantization;

/// <summary>ggml's block formats kept quantised: the library's decoder, its CPU dot products (integer and by blocks)
/// and the ILGPU kernels against the tests' own quantiser and element-by-element reference decoder
/// (<see cref="GgmlQuantizer"/>), and quantised GGUF models, mixed as llama-quantize mixes them, against the plain
/// reference forward pass of the dequantised weights.</summary>
[Collection("backends")]
public class QuantizedWeightTests
{
    public static TheoryData<GgufType> Types => new()
    {
        GgufType.Q8_0, GgufType.Q4_0, GgufType.Q4_1, GgufType.Q5_0, GgufType.Q5_1, GgufType.Q4_K, GgufType.Q5_K, GgufType.Q6_K,
    };

    internal static WeightType Library(GgufType t) => Enum.Parse<WeightType>(t.ToString());

    /// <summary>Gaussian-ish values with a zero block, a constant block and an outlier, so scales of every sign and size
    /// (and a zero scale) occur.</summary>
    private static float[] Values(int rows, int cols, int seed)
    {
        var rng = new Random(seed);
        var v = new float[rows * cols];
        for (int i = 0; i < v.Length; i++) v[i] = (float)((rng.NextDouble() + rng.NextDouble() + rng.NextDouble() - 1.5) * 0.2);
        Array.Clear(v, 0, 256);
        Array.Fill(v, -0.03f, 256, 256);
        v[700] = 1.7f;
        return v;
    }

    private static WeightTensor Quantized(GgufType t, int rows, int cols, int seed, out float[] original, out float[] reference)
    {
        original = Values(rows, cols, seed);
        var blocks = GgmlQuantizer.Quantize(t, original);
        reference = GgmlQuantizer.Dequantize(t, blocks, original.Length);
        return WeightTensor.FromBlocks("w", rows, cols, Library(t), blocks);
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void Decoder_matches_the_reference_and_stays_within_the_quantisers_error(GgufType t)
    {
        var w = Quantized(t, 4, 1024, seed: 1, out var original, out var reference);
        Assert.Equal(reference, w.ToFloat());
        var row = new float[1024];
        w.RowToFloat(2, row);
        Assert.Equal(reference.AsSpan(2048, 1024).ToArray(), row);
        // A wrong layout puts values in the wrong places: relative RMS error near 1 or above.
        double err = Math.Sqrt(original.Zip(reference, (a, b) => (double)(a - b) * (a - b)).Sum() / original.Sum(a => (double)a * a));
        double bound = t switch
        {
            GgufType.Q8_0 => 0.01,
            GgufType.Q6_K => 0.04,
            GgufType.Q5_0 or GgufType.Q5_1 or GgufType.Q5_K => 0.08,
            _ => 0.16,
        };
        Assert.True(err < bound, $"{t}: relative RMS error {err:F4} >= {bound}");
    }

    /// <summary>The CPU matrix product against double precision over the reference values: exact but for f32 rounding on
    /// the by-blocks path; on the integer path within the closed-form error of the 8-bit activation (each activation
    /// moves by at most half its block's step, max |x| / 127 / 2, over blocks of 32 or 256), summed over |w|.</summary>
    [Theory]
    [MemberData(nameof(Types))]
    public void Managed_matrix_product_matches_the_reference(GgufType t)
    {
        // The formats in blocks of 32 get an odd number of them, so the kernels' last, unpaired block is covered (they
        // take two blocks a pass).
        // Seven activation rows: a four-row block, a two-row block and one row alone where the type has those kernels.
        int n = 6, k = QuantFormats.BlockElements(Library(t)) == 32 ? 1056 : 1024, rows = 7;
        var w = Quantized(t, n, k, seed: 2, out _, out var reference);
        var rng = new Random(3);
        var x = Enumerable.Range(0, rows * k).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var backend = new ManagedSimdBackend(threads: 2);
        using var dw = backend.Upload(w);
        using var dx = backend.Allocate(rows * k);
        using var dy = backend.Allocate(rows * n);
        backend.Write(dx, x);
        backend.MatMul(dx, dw, dy, rows);
        var y = new float[rows * n];
        backend.Read(dy, y);
        // Each row of the batch is bitwise what the row gives alone (the four- and two-row kernels included).
        for (int r = 0; r < rows; r++)
        {
            using var one = backend.Allocate(k);
            using var out1 = backend.Allocate(n);
            backend.Write(one, x.AsSpan(r * k, k));
            backend.MatMul(one, dw, out1, 1);
            var alone = new float[n];
            backend.Read(out1, alone);
            Assert.Equal(alone.Select(BitConverter.SingleToInt32Bits), y.Skip(r * n).Take(n).Select(BitConverter.SingleToInt32Bits));
        }
        bool integer = QuantizedDot.UsesIntegerPath(Library(t));
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < n; j++)
            {
                double exact = 0, magnitude = 0, activationError = 0;
                for (int i = 0; i < k; i++)
                {
                    exact += (double)reference[j * k + i] * x[r * k + i];
                    magnitude += Math.Abs((double)reference[j * k + i] * x[r * k + i]);
                }
                int block = QuantizedDot.ActivationBlock(Library(t));
                for (int b = 0; b < k / block; b++)
                {
                    double step = x.Skip(r * k + block * b).Take(block).Max(Math.Abs) / 127;
                    for (int i = block * b; i < block * b + block; i++) activationError += step / 2 * Math.Abs(reference[j * k + i]);
                }
                double allowed = (integer ? activationError : 0) + 1e-5 * magnitude + 1e-6;
                Assert.True(Math.Abs(y[r * n + j] - exact) <= allowed,
                    $"{t} ({(integer ? "integer" : "by blocks")}) row {r} output {j}: {y[r * n + j]} vs {exact}, allowed {allowed:E2}");
                // The by-blocks path (what CPUs without AVX2 run) is checked on every CPU.
                float byBlocks = QuantizedDot.DotByBlocks(Library(t), w.Blocks.AsSpan(j * (int)QuantFormats.RowBytes(Library(t), k),
                    (int)QuantFormats.RowBytes(Library(t), k)), x.AsSpan(r * k, k));
                Assert.True(Math.Abs(byBlocks - exact) <= 1e-5 * magnitude + 1e-6, $"{t} by blocks: {byBlocks} vs {exact}");
            }
    }

    /// <summary>The ILGPU kernels (thread per output, warp per row, tiled GEMM, embedding) decode each format in the
    /// kernel to the reference values.</summary>
    [Theory]
    [MemberData(nameof(Types))]
    public void Ilgpu_kernels_decode_every_format(GgufType t)
    {
        int n = 5, k = 512;
        var w = Quantized(t, n, k, seed: 4, out _, out var reference);
        var rng = new Random(5);
        foreach (var name in new[] { "ilgpu-cpu", "ilgpu-cpu-wide" })
            foreach (int rows in new[] { 1, 6 })
            {
                var x = Enumerable.Range(0, rows * k).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
                float[] y = new float[rows * n], embedded = new float[2 * k];
                lock (Backends.Lock)
                {
                    var backend = Backends.Get(name);
                    using var dw = backend.Upload(w);
                    using var dx = backend.Allocate(rows * k);
                    using var dy = backend.Allocate(rows * n);
                    using var de = backend.Allocate(2 * k);
                    backend.Write(dx, x);
                    backend.MatMul(dx, dw, dy, rows);
                    backend.Read(dy, y);
                    backend.Embed(dw, [3, 0], de);
                    backend.Read(de, embedded);
                }
                for (int r = 0; r < rows; r++)
                    for (int j = 0; j < n; j++)
                    {
                        double exact = 0, magnitude = 0;
                        for (int i = 0; i < k; i++)
                        {
                            exact += (double)reference[j * k + i] * x[r * k + i];
                            magnitude += Math.Abs((double)reference[j * k + i] * x[r * k + i]);
                        }
                        Assert.True(Math.Abs(y[r * n + j] - exact) <= 1e-5 * magnitude + 1e-6,
                            $"{t} on {name}, {rows} rows: output ({r}, {j}) {y[r * n + j]} vs {exact}");
                    }
                Assert.Equal(reference.AsSpan(3 * k, k).ToArray(), embedded.AsSpan(0, k).ToArray());
                Assert.Equal(reference.AsSpan(0, k).ToArray(), embedded.AsSpan(k, k).ToArray());
            }
    }

    /// <summary>The loaded weights with every quantised tensor replaced by the reference decoder's values.</summary>
    private static LlamaWeights Dequantized(LlamaWeights w)
    {
        WeightTensor F(WeightTensor t) => t.Blocks == null ? t : WeightTensor.FromF32(t.Name, t.Rows, t.Cols,
            GgmlQuantizer.Dequantize(Enum.Parse<GgufType>(t.Type.ToString()), t.Blocks, t.Length));
        var layers = w.Layers.Select(l => new LayerWeights(F(l.AttentionNorm), F(l.Wq), F(l.Wk), F(l.Wv), F(l.Wo), null, null, null,
            F(l.FfnNorm), F(l.WGate), F(l.WDown), F(l.WUp))).ToList();
        var emb = F(w.TokenEmbedding);
        return new LlamaWeights(w.Config, emb, layers, F(w.FinalNorm), w.Config.TiedEmbeddings ? emb : F(w.Output), "reference");
    }

    private static void AssertMatchesDequantizedReference(LlamaWeights loaded, string backend, double tolerance)
    {
        var reference = ReferenceLlama.From(Dequantized(loaded));
        int vocab = loaded.Config.VocabSize;
        int[] tokens = [1, 17, 33, 5, 60, 2, 9, 41];
        lock (Backends.Lock)
        {
            using var model = new LlamaModel(loaded, Backends.Get(backend), maxChunkRows: 4);
            using var cache = model.CreateCache();
            var all = model.Forward(cache, tokens, allLogits: true);
            for (int i = 0; i < tokens.Length; i++)
                Compare.Close(all.AsSpan(i * vocab, vocab), reference.Step(tokens[i]).Select(v => (float)v).ToArray(), tolerance,
                    $"{backend}, position {i}");
        }
    }

    /// <summary>What llama-quantize's Q4_K_M writes for a small model: q4_K for most matrices, q6_K for attn_v, ffn_down
    /// and the output head, kept so in memory, run on both backends.</summary>
    [Theory]
    [InlineData("cpu")]
    [InlineData("ilgpu-cpu")]
    public void Mixed_k_quant_gguf_runs_quantised_and_matches_the_dequantised_reference(string backend)
    {
        var w = TestModels.SuperBlockModel(seed: 31);
        using var dir = new TempDir();
        string path = dir.File("q4_k_m.gguf");
        TestModels.WriteGguf(path, w, TestModels.Q4KMType);
        var loaded = ModelLoader.Load(path);
        Assert.Equal(WeightType.Q4_K, loaded.Layers[0].Wq.Type);
        Assert.Equal(WeightType.Q6_K, loaded.Layers[1].Wv.Type);
        Assert.Equal(WeightType.Q5_K, loaded.Layers[1].WUp.Type);
        Assert.Equal(WeightType.Q6_K, loaded.Output.Type);
        // Kept as blocks: 4.5 to 6.6 bits a weight, not 32.
        Assert.True(loaded.ByteSize < w.ByteSize / 4, $"{loaded.ByteSize} bytes held for {w.ByteSize} at f32");
        AssertMatchesDequantizedReference(loaded, backend, 2e-2);
    }

    [Theory]
    [InlineData(GgufType.Q8_0, "cpu")]
    [InlineData(GgufType.Q4_0, "cpu")]
    [InlineData(GgufType.Q4_1, "cpu")]
    [InlineData(GgufType.Q5_0, "ilgpu-cpu")]
    [InlineData(GgufType.Q5_1, "cpu")]
    [InlineData(GgufType.Q4_0, "ilgpu-cpu")]
    public void Block_of_32_gguf_runs_quantised_and_matches_the_dequantised_reference(GgufType type, string backend)
    {
        var w = TestModels.Random(TestModels.Config(dim: 64, hidden: 96), seed: 32);
        using var dir = new TempDir();
        TestModels.WriteGguf(dir.File("m.gguf"), w, type);
        var loaded = ModelLoader.Load(dir.File("m.gguf"));
        Assert.Equal(Library(type), loaded.Layers[0].WGate.Type);
        AssertMatchesDequantizedReference(loaded, backend, 2e-2);
    }

    [Fact]
    public void A_nan_scale_is_reported_with_the_tensor_row_and_block()
    {
        var w = TestModels.Random(TestModels.Config(dim: 256, hidden: 512, vocab: 64), seed: 33);
        using var dir = new TempDir();
        string path = dir.File("m.gguf");
        TestModels.WriteGguf(path, w, GgufType.Q4_K);
        var f = GgufFile.Open(path);
        var info = f.Tensors["blk.1.ffn_down.weight"];
        var bytes = File.ReadAllBytes(path);
        long at = f.DataStart + (long)info.Offset + 2 * 144 * 3 + 144 + 2; // row 3 (two blocks a row), block 1, dmin
        bytes[at] = 0x00; bytes[at + 1] = 0x7E; // an f16 NaN
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<InvalidModelException>(() => ModelLoader.Load(path));
        Assert.Contains("blk.1.ffn_down.weight", e.Message);
        Assert.Contains("block 1 of row 3", e.Message);
    }
}
