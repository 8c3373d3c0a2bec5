using KvIlgpu.Compute;
using KvIlgpu.Models;

namespace KvIlgpu.Tests.Compute;

/// <summary>The managed backend's matrix product over every number of activation rows it blocks differently (one, two,
/// three, the remainders after its three- and two-row blocks, a tile boundary, odd weight rows): each row of a batch is
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
        foreach (int rows in new[] { 1, 2, 3, 4, 5, 7, 9 })
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
