using KvIlgpu.Tests.Support;
using KvIlgpu.Training;

namespace KvIlgpu.Tests.Training;

/// <summary>The managed trainer's blocked matrix products against the plain loops of ForwardBackward (y = x w^T,
/// dx += dy w, dw += dy^T x), in double-checked rounding, over shapes that take every block and remainder: row counts
/// that are not multiples of three or two, weight row counts that are odd or span several tiles, lengths below and above
/// a block's 32-value step.</summary>
public class TrainingMatMulTests
{
    [Theory]
    [InlineData(7, 37, 5)]
    [InlineData(12, 64, 130)]
    [InlineData(1, 256, 3)]
    [InlineData(32, 688, 9)]
    [InlineData(5, 16, 600)]
    public void Blocked_products_match_the_plain_loops(int m, int k, int n)
    {
        var rng = new Random(m * 1000 + k * 10 + n);
        float[] Random(int count) => Enumerable.Range(0, count).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var x = Random(m * k);
        var w = Random(n * k);
        var dy = Random(m * n);

        var y = new float[m * n];
        var expectedY = new float[m * n];
        TrainingMatMul.Forward(x, w, y, m, k, n);
        ForwardBackward.MatMul(x, w, expectedY, m, k, n);
        Compare.Close(y, expectedY, 1e-5, "y");

        // The backward adds into what is there.
        var dx = Random(m * k);
        var dw = Random(n * k);
        var expectedDx = (float[])dx.Clone();
        var expectedDw = (float[])dw.Clone();
        TrainingMatMul.Backward(x, w, dy, dx, dw, m, k, n);
        ForwardBackward.MatMulBackward(x, w, dy, expectedDx, expectedDw, m, k, n);
        Compare.Close(dx, expectedDx, 1e-5, "dx");
        Compare.Close(dw, expectedDw, 1e-5, "dw");

        // Either gradient alone.
        var dxOnly = new float[m * k];
        TrainingMatMul.Backward(x, w, dy, dxOnly, Span<float>.Empty, m, k, n);
        var expectedDxOnly = new float[m * k];
        ForwardBackward.MatMulBackward(x, w, dy, expectedDxOnly, Span<float>.Empty, m, k, n);
        Compare.Close(dxOnly, expectedDxOnly, 1e-5, "dx alone");
    }
}
