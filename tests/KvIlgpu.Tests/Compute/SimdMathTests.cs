using KvIlgpu.Compute;
using KvIlgpu.Models;

namespace KvIlgpu.Tests.Compute;

public class SimdMathTests
{
    /// <summary>The two-row dot must give exactly (bitwise) what two single dots give, or batched decoding would change
    /// a sequence's numbers depending on what it is batched with.</summary>
    [Theory]
    [InlineData(WeightType.F32, 512)]
    [InlineData(WeightType.F32, 77)]
    [InlineData(WeightType.F32, 16)]
    [InlineData(WeightType.BF16, 1376)]
    [InlineData(WeightType.F16, 99)]
    public void Two_row_dot_is_bitwise_equal_to_two_single_dots(WeightType type, int n)
    {
        var rng = new Random(n);
        float[] R() => Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble() * 2 - 1).ToArray();
        var x0 = R(); var x1 = R();
        var w = WeightTensor.FromF32("w", 1, n, R()).ConvertTo(type);
        var kind = type switch
        {
            WeightType.F32 => SimdMath.WeightKind.F32,
            WeightType.BF16 => SimdMath.WeightKind.BF16,
            _ =>
            SimdMath.WeightKind.F16
        };
        var (a, b) = SimdMath.Dot2(x0, x1, w.F32, w.Bits16, kind);
        float e0 = type == WeightType.F32 ? SimdMath.Dot(x0, w.F32) : SimdMath.Dot(x0, w.Bits16, type == WeightType.BF16);
        float e1 = type == WeightType.F32 ? SimdMath.Dot(x1, w.F32) : SimdMath.Dot(x1, w.Bits16, type == WeightType.BF16);
        Assert.Equal(BitConverter.SingleToInt32Bits(e0), BitConverter.SingleToInt32Bits(a));
        Assert.Equal(BitConverter.SingleToInt32Bits(e1), BitConverter.SingleToInt32Bits(b));
        // And both are right: against a double-precision sum.
        var wf = w.ToFloat();
        Assert.Equal(Enumerable.Range(0, n).Sum(i => (double)x0[i] * wf[i]), a, 1e-4);
    }
}
