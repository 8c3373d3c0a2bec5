using KvIlgpu.Compute;
using KvIlgpu.Models;
using KvIlgpu.Tests.Support;

namespace KvIlgpu.Tests.Compute;

/// <summary>The managed backend's matrix product over every number of activation rows it blocks differently (one, two,
/// three, the remainders after its three- and two-row blocks, a tile boundary, odd weight rows, and enough rows for bf16
/// to widen its tiles): each row of a batch is
/// bitwise what that row gives alone (batching changes no number), and equals a double-precision product of the stored
/// weights as the format defines them.</summary>
public class ManagedMatMulTests
{
    [Theory]
    [InlineData(WeightType.F32, 37, 96)]
    [InlineData(WeightType.F32, 40, 512)]
    [InlineData(WeightType.F16, 37, 96)]
    [InlineData(WeightType.F16, 18, 520)]
    [InlineData(WeightType.BF16, 37, 96)]
    [InlineData(WeightType.BF16, 20, 77)]
    public void Every_batch_row_is_bitwise_the_row_alone_and_matches_a_double_product(WeightType type, int outputs, int inputs)
    {
        var rng = new Random(outputs * 31 + inputs + (int)type);
        var weight = WeightTensor.FromF32("w", outputs, inputs,
            Enumerable.Range(0, outputs * inputs).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray()).ConvertTo(type);
        var stored = weight.ToFloat();
        var backend = new ManagedSimdBackend(2);
        using var w = backend.Upload(weight);
        foreach (int rows in new[] { 1, 2, 3, 4, 5, 7, 9, 34 })
        {
            var x = Enumerable.Range(0, rows * inputs).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray();
            var batch = Product(backend, w, x, rows, outputs);
            for (int r = 0; r < rows; r++)
            {
                var alone = Product(backend, w, x.AsSpan(r * inputs, inputs).ToArray(), 1, outputs);
                for (int j = 0; j < outputs; j++)
                {
                    Assert.Equal(BitConverter.SingleToInt32Bits(alone[j]), BitConverter.SingleToInt32Bits(batch[r * outputs + j]));
                    double expected = 0;
                    for (int i = 0; i < inputs; i++) expected += (double)x[r * inputs + i] * stored[j * inputs + i];
                    Assert.Equal(expected, batch[r * outputs + j], 1e-4);
                }
            }
        }
    }

    /// <summary>The AVX-512 machines' f32 GEMM (four-by-three blocks, leftover activation rows and weight rows one by one)
    /// holds to the same two checks; without AVX-512 it runs on the runtime's software Vector512, so its loops are
    /// tested on every machine.</summary>
    [Theory]
    [InlineData(37, 96)]
    [InlineData(40, 77)]
    public void The_avx512_f32_gemm_gives_every_row_what_it_gives_alone(int outputs, int inputs)
    {
        F32Products.ForceWide4x3 = true;
        try { Every_batch_row_is_bitwise_the_row_alone_and_matches_a_double_product(WeightType.F32, outputs, inputs); }
        finally { F32Products.ForceWide4x3 = false; }
    }

    /// <summary>MatMuls (one input, several weights: a layer's q, k and v, its gate and up) splits all the weights' rows
    /// between the workers at once, here across matrix boundaries and mixed types, 16-bit inputs prescaled and not:
    /// every output is bitwise what MatMul gives for its weight alone (which the tests above and the quantised-weight
    /// tests hold to references), for one activation row and for several (where it falls back to MatMul).</summary>
    [Theory]
    [InlineData(1f)]
    [InlineData(50000f)]
    public void Several_weights_on_one_input_give_each_weights_own_product(float inputScale)
    {
        const int Inputs = 512;
        var rng = new Random(7);
        float[] Values(int n) => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1) * 0.1f).ToArray();
        WeightTensor Quantized(GgufType t, int outputs) => WeightTensor.FromBlocks("w", outputs, Inputs,
            Enum.Parse<WeightType>(t.ToString()), GgmlQuantizer.Quantize(t, Values(outputs * Inputs)));
        var weights = new[]
        {
            WeightTensor.FromF32("w", 37, Inputs, Values(37 * Inputs)),
            WeightTensor.FromF32("w", 5, Inputs, Values(5 * Inputs)).ConvertTo(WeightType.F16),
            WeightTensor.FromF32("w", 40, Inputs, Values(40 * Inputs)).ConvertTo(WeightType.BF16),
            Quantized(GgufType.Q4_K, 9), Quantized(GgufType.Q6_K, 16), Quantized(GgufType.Q8_0, 7), Quantized(GgufType.Q5_0, 3),
        };
        var backend = new ManagedSimdBackend(2);
        var uploaded = weights.Select(backend.Upload).ToArray();
        foreach (int rows in new[] { 1, 3 })
        {
            var x = Enumerable.Range(0, rows * Inputs).Select(_ => (float)(rng.NextDouble() * 2 - 1) * inputScale).ToArray();
            using var dx = backend.Allocate(x.Length);
            backend.Write(dx, x);
            // Every split of the list: a layer's three, its two, and all seven at once.
            foreach (var (from, count) in new[] { (0, 3), (3, 2), (0, 7) })
            {
                var outputs = Enumerable.Range(from, count).Select(i => backend.Allocate(rows * weights[i].Rows)).ToArray();
                backend.MatMuls(dx, uploaded.AsSpan(from, count), outputs, rows);
                for (int i = 0; i < count; i++)
                {
                    var together = new float[rows * weights[from + i].Rows];
                    backend.Read(outputs[i], together);
                    var alone = Product(backend, uploaded[from + i], x, rows, weights[from + i].Rows);
                    Assert.Equal(alone.Select(BitConverter.SingleToInt32Bits), together.Select(BitConverter.SingleToInt32Bits));
                    outputs[i].Dispose();
                }
            }
        }
        foreach (var w in uploaded) w.Dispose();
    }

    private static float[] Product(ManagedSimdBackend backend, DeviceWeight w, float[] x, int rows, int outputs)
    {
        using var dx = backend.Allocate(x.Length);
        using var dy = backend.Allocate(rows * outputs);
        backend.Write(dx, x);
        backend.MatMul(dx, w, dy, rows);
        var y = new float[rows * outputs];
        backend.Read(dy, y);
        return y;
    }
}
