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
}
