using KvIlgpu.Compute;

namespace KvIlgpu.Tests.Compute;

public class DenseHeadAttentionTests
{
    /// <summary>One head's attention over rows interleaved with other heads' (a stride wider than the head) against
    /// softmax attention written out in double: widths served by the blocked path (whole 8s, with and without a 64-wide
    /// pass) and one that is not, with row counts that are and are not whole 4s.</summary>
    [Theory]
    [InlineData(64, 1)]
    [InlineData(64, 13)]
    [InlineData(128, 40)]
    [InlineData(72, 7)]
    [InlineData(16, 9)]
    [InlineData(12, 6)]
    public void Attention_equals_a_double_reference(int d, int len)
    {
        var rng = new Random(d * 100 + len);
        int stride = 2 * d + 8, offset = d + 3;
        float[] R(int n) => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var q = R(d);
        var keys = R(offset + len * stride);
        var values = R(offset + len * stride);
        float scale = 1f / MathF.Sqrt(d);
        var dst = new float[d];
        DenseHeadAttention.Attend(q, keys.AsSpan(offset), values.AsSpan(offset), stride, len, scale, new float[len], dst);

        var s = new double[len];
        for (int t = 0; t < len; t++)
            for (int i = 0; i < d; i++) s[t] += (double)q[i] * keys[offset + t * stride + i] * scale;
        double max = s.Max(), sum = s.Sum(x => Math.Exp(x - max));
        for (int i = 0; i < d; i++)
        {
            double expected = 0;
            for (int t = 0; t < len; t++) expected += Math.Exp(s[t] - max) / sum * values[offset + t * stride + i];
            Assert.Equal(expected, dst[i], 1e-5);
        }
    }

    /// <summary>Four queries at a time (a GQA group's heads, or neighbouring rows of different lengths; fewer than four
    /// in a last block) give each query bitwise what it gets alone, and its double-precision value.</summary>
    [Theory]
    [InlineData(64, 4, new[] { 40, 40, 40, 40 })]
    [InlineData(64, 3, new[] { 13, 14, 15 })]
    [InlineData(16, 2, new[] { 9, 1 })]
    [InlineData(72, 1, new[] { 7 })]
    [InlineData(128, 4, new[] { 30, 31, 32, 33 })]
    [InlineData(24, 4, new[] { 1, 2, 3, 4 })]
    public void Four_queries_at_a_time_equal_each_alone(int d, int count, int[] lens)
    {
        var rng = new Random(d * 10 + count);
        int longest = lens.Max(), stride = 2 * d + 8, offset = d + 3;
        float[] R(int n) => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var qs = R(6 * d);
        var keys = R(offset + longest * stride);
        var values = R(offset + longest * stride);
        float scale = 1f / MathF.Sqrt(d);
        int[] at = Enumerable.Range(0, count).Select(i => (5 - i) * d).ToArray(); // queries out of order in the buffer
        var dst = new float[6 * d];
        DenseHeadAttention.AttendFour(qs, at, lens, count, keys.AsSpan(offset), values.AsSpan(offset), stride, d, scale,
            new float[4 * longest], dst, at);
        for (int i = 0; i < count; i++)
        {
            var alone = new float[d];
            DenseHeadAttention.Attend(qs.AsSpan(at[i], d), keys.AsSpan(offset), values.AsSpan(offset), stride, lens[i], scale,
                new float[lens[i]], alone);
            Assert.Equal(alone.Select(BitConverter.SingleToInt32Bits), dst.Skip(at[i]).Take(d).Select(BitConverter.SingleToInt32Bits));
            var s = new double[lens[i]];
            for (int t = 0; t < lens[i]; t++)
                for (int j = 0; j < d; j++) s[t] += (double)qs[at[i] + j] * keys[offset + t * stride + j] * scale;
            double max = s.Max(), sum = s.Sum(x => Math.Exp(x - max));
            double expected = 0;
            for (int t = 0; t < lens[i]; t++) expected += Math.Exp(s[t] - max) / sum * values[offset + t * stride + d - 1];
            Assert.Equal(expected, dst[at[i] + d - 1], 1e-5);
        }
    }
}
