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
        // The 16-bit products read their activation rows in pair order.
        float[] p0 = Paired(x0, type), p1 = Paired(x1, type);
        var (a, b) = SimdMath.Dot2(p0, p1, w.F32, w.Bits16, kind);
        float e0 = type == WeightType.F32 ? SimdMath.Dot(x0, w.F32) : SimdMath.Dot(p0, w.Bits16, type == WeightType.BF16);
        float e1 = type == WeightType.F32 ? SimdMath.Dot(x1, w.F32) : SimdMath.Dot(p1, w.Bits16, type == WeightType.BF16);
        Assert.Equal(BitConverter.SingleToInt32Bits(e0), BitConverter.SingleToInt32Bits(a));
        Assert.Equal(BitConverter.SingleToInt32Bits(e1), BitConverter.SingleToInt32Bits(b));
        // And both are right: against a double-precision sum.
        var wf = w.ToFloat();
        Assert.Equal(Enumerable.Range(0, n).Sum(i => (double)x0[i] * wf[i]), a, 1e-4);
    }

    /// <summary>The prefill GEMM's two-by-two block gives each product bitwise what Dot gives (and what decode gives the
    /// same row), also over f16 and bf16 rows widened once as the f16 GEMM's tiles are.</summary>
    [Theory]
    [InlineData(512)]
    [InlineData(1376)]
    [InlineData(77)]
    [InlineData(31)]
    public void Two_by_two_dot_is_bitwise_equal_to_four_single_dots(int n)
    {
        var rng = new Random(n + 1);
        float[] R() => Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble() * 2 - 1).ToArray();
        float[] x0 = R(), x1 = R(), w0 = R(), w1 = R();
        var (a, b, c, d) = SimdMath.Dot2x2(x0, x1, w0, w1);
        float[] expected = [SimdMath.Dot(x0, w0), SimdMath.Dot(x0, w1), SimdMath.Dot(x1, w0), SimdMath.Dot(x1, w1)];
        Assert.Equal(expected.Select(BitConverter.SingleToInt32Bits), new[] { a, b, c, d }.Select(BitConverter.SingleToInt32Bits));
        Assert.Equal(Enumerable.Range(0, n).Sum(i => (double)x1[i] * w0[i]), c, 1e-4);
        foreach (var type in new[] { WeightType.F16, WeightType.BF16 })
        {
            var u = WeightTensor.FromF32("u", 1, n, w0).ConvertTo(type).Bits16!;
            var v = WeightTensor.FromF32("v", 1, n, w1).ConvertTo(type).Bits16!;
            bool bf16 = type == WeightType.BF16;
            float[] p0 = Paired(x0, type), p1 = Paired(x1, type);
            var (p, q, r, s) = SimdMath.Dot2x2(p0, p1, u, v, bf16);
            float[] wanted = [SimdMath.Dot(p0, u, bf16), SimdMath.Dot(p0, v, bf16), SimdMath.Dot(p1, u, bf16), SimdMath.Dot(p1, v, bf16)];
            Assert.Equal(wanted.Select(BitConverter.SingleToInt32Bits), new[] { p, q, r, s }.Select(BitConverter.SingleToInt32Bits));
            var wf = WeightTensor.From16("u", 1, n, type, u).ToFloat();
            Assert.Equal(Enumerable.Range(0, n).Sum(i => (double)x1[i] * wf[i]), r, 1e-4);
            // The 16-bit GEMM's widened tile: rows widened once, then met two by two, with and without the prescaled
            // activation (f16's).
            if (!SimdMath.WidensTiles(n)) continue;
            foreach (bool prescale in bf16 ? new[] { false } : [false, true])
            {
                float[] q0 = new float[n], q1 = new float[n], uf = new float[n], vf = new float[n];
                bool scaled = SimdMath.ToPairOrder(x0, q0, prescale) & SimdMath.ToPairOrder(x1, q1, prescale);
                Assert.Equal(prescale && n >= 32, scaled);
                SimdMath.WidenPairs(u, uf, bf16, scaled);
                SimdMath.WidenPairs(v, vf, bf16, scaled);
                var (e, f, g, h) = SimdMath.Dot2x2Widened(q0, q1, uf, vf, u, v, bf16);
                float[] alone = [SimdMath.Dot(q0, u, bf16, scaled), SimdMath.Dot(q0, v, bf16, scaled), SimdMath.Dot(q1, u, bf16, scaled),
                    SimdMath.Dot(q1, v, bf16, scaled)];
                Assert.Equal(alone.Select(BitConverter.SingleToInt32Bits), new[] { e, f, g, h }.Select(BitConverter.SingleToInt32Bits));
                Assert.Equal(wanted[2], g, 1e-4 * Math.Max(1, Math.Abs(wanted[2])));
            }
        }
    }

    /// <summary>The f32 three-by-two block (the prefill GEMM's) gives each of its six products bitwise what Dot
    /// gives, and the right value.</summary>
    [Theory]
    [InlineData(512)]
    [InlineData(1376)]
    [InlineData(77)]
    [InlineData(31)]
    public void Three_by_two_dot_is_bitwise_equal_to_six_single_dots(int n)
    {
        var rng = new Random(n + 2);
        float[] R() => Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble() * 2 - 1).ToArray();
        float[] x0 = R(), x1 = R(), x2 = R(), w0 = R(), w1 = R();
        var six = new float[6];
        SimdMath.Dot3x2(x0, x1, x2, w0, w1, six);
        float[] expected = [SimdMath.Dot(x0, w0), SimdMath.Dot(x0, w1), SimdMath.Dot(x1, w0), SimdMath.Dot(x1, w1),
            SimdMath.Dot(x2, w0), SimdMath.Dot(x2, w1)];
        Assert.Equal(expected.Select(BitConverter.SingleToInt32Bits), six.Select(BitConverter.SingleToInt32Bits));
        Assert.Equal(Enumerable.Range(0, n).Sum(i => (double)x2[i] * w1[i]), six[5], 1e-4);
        // The 16-bit GEMM's block on AVX2: f16 and bf16 rows widened once (WidenPairs), met three activation rows at a
        // time, with and without the prescaled activation.
        if (!SimdMath.WidensTiles(n)) return;
        foreach (var type in new[] { WeightType.F16, WeightType.BF16 })
        {
            bool bf16 = type == WeightType.BF16;
            var u = WeightTensor.FromF32("u", 1, n, w0).ConvertTo(type).Bits16!;
            var v = WeightTensor.FromF32("v", 1, n, w1).ConvertTo(type).Bits16!;
            var vf64 = WeightTensor.From16("v", 1, n, type, v).ToFloat();
            foreach (bool prescale in bf16 ? new[] { false } : [false, true])
            {
                float[] q0 = new float[n], q1 = new float[n], q2 = new float[n], uf = new float[n], vf = new float[n];
                bool scaled = SimdMath.ToPairOrder(x0, q0, prescale) & SimdMath.ToPairOrder(x1, q1, prescale)
                    & SimdMath.ToPairOrder(x2, q2, prescale);
                SimdMath.WidenPairs(u, uf, bf16, scaled);
                SimdMath.WidenPairs(v, vf, bf16, scaled);
                SimdMath.Dot3x2Widened(q0, q1, q2, uf, vf, u, v, bf16, six);
                float[] alone = [SimdMath.Dot(q0, u, bf16, scaled), SimdMath.Dot(q0, v, bf16, scaled),
                    SimdMath.Dot(q1, u, bf16, scaled), SimdMath.Dot(q1, v, bf16, scaled),
                    SimdMath.Dot(q2, u, bf16, scaled), SimdMath.Dot(q2, v, bf16, scaled)];
                Assert.Equal(alone.Select(BitConverter.SingleToInt32Bits), six.Select(BitConverter.SingleToInt32Bits));
                Assert.Equal(Enumerable.Range(0, n).Sum(i => (double)x2[i] * vf64[i]), six[5], 1e-4);
            }
        }
    }

    public static TheoryData<int, bool> FourByThreeCases()
    {
        var cases = new TheoryData<int, bool>();
        foreach (bool wide in new[] { true, false })
            foreach (int n in new[] { 512, 1376, 77, 24, 5 }) cases.Add(n, wide);
        return cases;
    }

    /// <summary>The four-by-three f32 blocks give each of their twelve products bitwise what Dot gives, and the right
    /// value, at widths with and without an odd last chunk and a tail: the AVX-512 one (wide; without AVX-512 its Vector512
    /// operations are the runtime's software ones, fused multiply-adds included, so its order is checked on every machine)
    /// and the AVX2 one (two passes, one per accumulator of each product).</summary>
    [Theory]
    [MemberData(nameof(FourByThreeCases))]
    public void Four_by_three_blocks_are_bitwise_equal_to_single_dots(int n, bool wide)
    {
        var rng = new Random(n + 3);
        float[] R(int count) => Enumerable.Range(0, count).Select(_ => (float)rng.NextDouble() * 2 - 1).ToArray();
        float[] x = R(4 * n), w = R(3 * n);
        var twelve = new float[12];
        if (wide) F32Products.Dot4x3Wide(x, w, n, twelve);
        else F32Products.Dot4x3(x, w, n, twelve);
        for (int r = 0; r < 4; r++)
            for (int j = 0; j < 3; j++)
            {
                float single = SimdMath.Dot(x.AsSpan(r * n, n), w.AsSpan(j * n, n));
                Assert.Equal(BitConverter.SingleToInt32Bits(single), BitConverter.SingleToInt32Bits(twelve[3 * r + j]));
                Assert.Equal(Enumerable.Range(0, n).Sum(i => (double)x[r * n + i] * w[j * n + i]), twelve[3 * r + j], 1e-4);
            }
    }

    private static float[] Paired(float[] x, WeightType type)
    {
        if (type == WeightType.F32) return x;
        var p = new float[x.Length];
        SimdMath.ToPairOrder(x, p);
        return p;
    }

    /// <summary>The pair-order f16 and bf16 products against a double-precision sum of the format's own values (decoded
    /// by FloatBits from the definition), over halves of every kind: both signs, zero, subnormals, the largest normal; and
    /// an f16 product over an activation prescaled by 2^112 is bitwise the unscaled one, while an activation with a value
    /// of 2^15 or more is left unscaled.</summary>
    [Theory]
    [InlineData(WeightType.F16, 64)]
    [InlineData(WeightType.F16, 1376)]
    [InlineData(WeightType.F16, 77)]
    [InlineData(WeightType.BF16, 64)]
    [InlineData(WeightType.BF16, 333)]
    public void Pair_order_products_match_the_format_values(WeightType type, int n)
    {
        var rng = new Random(n * 7 + (int)type);
        var bits = new ushort[n];
        ushort[] special = type == WeightType.F16 ? [0x0000, 0x8000, 0x0001, 0x83FF, 0x03FF, 0x0400, 0x7BFF, 0xFBFF, 0x3C00]
            : [0x0000, 0x8000, 0x0001, 0x807F, 0x0080, 0x3F80, 0xC2F7];
        for (int i = 0; i < n; i++)
            bits[i] = i % 5 == 0 ? special[i / 5 % special.Length]
                : type == WeightType.F16 ? (ushort)(rng.Next(0, 0x7BFF) | (rng.Next(2) << 15))
                : (ushort)(rng.Next(0x3000, 0x4300) | (rng.Next(2) << 15));
        var x = Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        double expected = 0, magnitude = 0;
        for (int i = 0; i < n; i++)
        {
            double term = x[i] * (double)(type == WeightType.F16 ? FloatBits.FromHalf(bits[i]) : FloatBits.FromBFloat16(bits[i]));
            expected += term;
            magnitude += Math.Abs(term);
        }
        bool bf16 = type == WeightType.BF16;
        var paired = new float[n];
        Assert.False(SimdMath.ToPairOrder(x, paired));
        float plain = SimdMath.Dot(paired, bits, bf16);
        Assert.Equal(expected, plain, magnitude * 1e-6 + 1e-30);
        if (bf16) return;
        var scaled = new float[n];
        bool prescaled = SimdMath.ToPairOrder(x, scaled, scaleForHalves: true);
        Assert.Equal(System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated && n >= 32 && !SimdMath.UseVector512, prescaled);
        Assert.Equal(BitConverter.SingleToInt32Bits(plain), BitConverter.SingleToInt32Bits(SimdMath.Dot(scaled, bits, bf16, prescaled)));
        x[n / 2] = 40000f;
        Assert.False(SimdMath.ToPairOrder(x, scaled, scaleForHalves: true));
    }

    /// <summary>Softmax of large inputs (attention scores or logits over a low temperature) is the closed form, not NaN.</summary>
    [Fact]
    public void Softmax_of_large_inputs_is_the_closed_form()
    {
        float[] x = [300f, 299f, 1f];
        var y = new float[3];
        SimdMath.SoftMax(x, y);
        double z = 1 + Math.Exp(-1) + Math.Exp(-299);
        Assert.Equal(1 / z, y[0], 6);
        Assert.Equal(Math.Exp(-1) / z, y[1], 6);
        Assert.Equal(0, y[2], 6);
    }

    /// <summary>The managed backend's attention over scores in the hundreds equals the double-precision reference.</summary>
    [Fact]
    public void Attention_with_large_scores_matches_the_reference()
    {
        var b = new ManagedSimdBackend();
        int heads = 2, kvHeads = 1, d = 8, positions = 5;
        var rng = new Random(3);
        var q = Enumerable.Range(0, heads * d).Select(_ => (float)rng.NextDouble() * 60).ToArray(); // scores of 100 to 1000
        var k = Enumerable.Range(0, positions * kvHeads * d).Select(_ => (float)rng.NextDouble() * 10).ToArray();
        var v = Enumerable.Range(0, positions * kvHeads * d).Select(_ => (float)rng.NextDouble()).ToArray();
        using var dq = b.Upload(q); using var dk = b.Upload(k); using var dv = b.Upload(v); using var o = b.Allocate(heads * d);
        b.Attention(dq, dk, dv, o, new AttentionShape(1, positions - 1, heads, kvHeads, d, 0));
        var got = b.ToArray(o);
        for (int h = 0; h < heads; h++)
        {
            var scores = Enumerable.Range(0, positions)
                .Select(t => Enumerable.Range(0, d).Sum(i => (double)q[h * d + i] * k[t * d + i]) / Math.Sqrt(d)).ToArray();
            double max = scores.Max(), sum = scores.Sum(sc => Math.Exp(sc - max));
            for (int i = 0; i < d; i++)
            {
                double expected = Enumerable.Range(0, positions).Sum(t => Math.Exp(scores[t] - max) / sum * v[t * d + i]);
                Assert.Equal(expected, got[h * d + i], 4);
            }
        }
    }
}
