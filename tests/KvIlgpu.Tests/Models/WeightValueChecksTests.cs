using KvIlgpu.Models;
using KvIlgpu.Tests.Support;

namespace KvIlgpu.Tests.Models;

/// <summary>A weight that is NaN, infinite or far beyond any trained weight is refused at load, naming the tensor and the
/// element's row and column, in each stored precision.</summary>
public class WeightValueChecksTests
{
    [Theory]
    [InlineData(WeightType.F32, float.NaN, "holds NaN at element 13 (row 1, column 5)")]
    [InlineData(WeightType.F32, float.NegativeInfinity, "holds an infinity at element 13 (row 1, column 5)")]
    [InlineData(WeightType.F32, -3e7f, "holds -3E+07 at element 13 (row 1, column 5): no trained weight is near that large")]
    [InlineData(WeightType.BF16, float.NaN, "holds NaN at element 13 (row 1, column 5)")]
    [InlineData(WeightType.BF16, 2e9f, "holds 2E+09 at element 13 (row 1, column 5): no trained weight is near that large")]
    [InlineData(WeightType.F16, float.PositiveInfinity, "holds an infinity at element 13 (row 1, column 5)")]
    public void A_bad_weight_is_refused_with_its_tensor_row_and_column(WeightType type, float value, string expected)
    {
        var w = TestModels.Random(TestModels.Config(dim: 8, hidden: 16, layers: 1, heads: 2, kvHeads: 1, vocab: 16, seq: 8), seed: 1);
        var c = w.Config;
        var wq = w.Layers[0].Wq.ToFloat(); // [8, 8]: element 13 is row 1, column 5
        wq[13] = value;
        var tensor = WeightTensor.FromF32("wq0", c.QDim, c.Dim, wq).ConvertTo(type);
        var layers = new[] { w.Layers[0] with { Wq = tensor } };
        var e = Assert.Throws<InvalidModelException>(() => new LlamaWeights(c, w.TokenEmbedding, layers, w.FinalNorm, w.Output, "m.bin"));
        Assert.Equal($"m.bin: tensor wq0 {expected}" + (expected.EndsWith(')') ? "" : " (the check is |w| <= 1000000); the file is " +
            "probably damaged"), e.Message);
    }

    [Fact]
    public void The_largest_plausible_weights_load()
    {
        var w = TestModels.Random(TestModels.Config(dim: 8, hidden: 16, layers: 1, heads: 2, kvHeads: 1, vocab: 16, seq: 8), seed: 1);
        var wq = w.Layers[0].Wq.ToFloat();
        wq[0] = 65504f; // f16's largest
        wq[1] = -999_000f;
        var layers = new[] { w.Layers[0] with { Wq = WeightTensor.FromF32("wq0", w.Config.QDim, w.Config.Dim, wq) } };
        _ = new LlamaWeights(w.Config, w.TokenEmbedding, layers, w.FinalNorm, w.Output, "m.bin");
    }
}
