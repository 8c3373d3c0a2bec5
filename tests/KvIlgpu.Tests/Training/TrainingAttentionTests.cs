using KvIlgpu.Tests.Support;
using KvIlgpu.Training;

namespace KvIlgpu.Tests.Training;

/// <summary>The managed trainer's blocked causal attention against ForwardBackward's plain loops, forward (output and
/// probabilities) and backward (dq, dk, dv added into what is there), for grouped and plain heads, head widths below and
/// above a block's 32-value step, and lengths that leave every kind of remainder row.</summary>
public class TrainingAttentionTests
{
    [Theory]
    [InlineData(1, 4, 2, 16)]
    [InlineData(7, 4, 2, 16)]
    [InlineData(38, 4, 2, 64)]
    [InlineData(65, 2, 2, 32)]
    [InlineData(40, 6, 2, 8)]
    public void Blocked_attention_matches_the_plain_loops(int t, int heads, int kvHeads, int d)
    {
        var rng = new Random(t * 100 + heads * 10 + d);
        float[] Random(int count) => Enumerable.Range(0, count).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var q = Random(t * heads * d);
        var k = Random(t * kvHeads * d);
        var v = Random(t * kvHeads * d);
        var output = new float[t * heads * d];
        var probs = Random(heads * t * t); // garbage the forward must overwrite
        var expectedOutput = new float[output.Length];
        var expectedProbs = new float[probs.Length];
        TrainingAttention.Forward(q, k, v, output, probs, t, heads, kvHeads, d);
        ForwardBackward.Attention(q, k, v, expectedOutput, expectedProbs, t, heads, kvHeads, d);
        Compare.Close(output, expectedOutput, 1e-5, "output");
        Compare.Close(probs, expectedProbs, 1e-5, "probabilities");

        var dOut = Random(output.Length);
        var dq = Random(q.Length);
        var dk = Random(k.Length);
        var dv = Random(v.Length);
        var (edq, edk, edv) = ((float[])dq.Clone(), (float[])dk.Clone(), (float[])dv.Clone());
        TrainingAttention.Backward(q, k, v, expectedProbs, dOut, dq, dk, dv, t, heads, kvHeads, d);
        ForwardBackward.AttentionBackward(q, k, v, expectedProbs, dOut, edq, edk, edv, t, heads, kvHeads, d);
        Compare.Close(dq, edq, 1e-5, "dq");
        Compare.Close(dk, edk, 1e-5, "dk");
        Compare.Close(dv, edv, 1e-5, "dv");
    }
}
