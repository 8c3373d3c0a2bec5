using System.Text;
using System.Text.Json;
using KvIlgpu.Models;
using KvIlgpu.Projection;
using KvIlgpu.Tests.Support;

namespace KvIlgpu.Tests.Projection;

public class KvProjectionFileTests
{
    private static readonly ModelConfig Model = TestModels.Config(dim: 32, hidden: 48, layers: 2, heads: 4, kvHeads: 2);

    [Fact]
    public void A_projection_file_reads_back_bit_for_bit_with_its_ranks_and_method()
    {
        using var dir = new TempDir();
        var p = TestProjections.Random(2, 2, 8, seed: 3, rank: rng => 1 + rng.Next(8));
        string path = Path.Combine(dir.Path, "p.safetensors");
        KvProjectionFile.Save(p, path);
        var back = KvProjectionFile.Load(path, Model);
        Assert.Equal("random", back.Method);
        foreach (var part in new[] { KvPart.Key, KvPart.Value })
        {
            Assert.Equal(p.AllRanks(part), back.AllRanks(part));
            for (int l = 0; l < 2; l++)
                for (int h = 0; h < 2; h++)
                {
                    Assert.Equal(p.Basis(part, l, h), back.Basis(part, l, h));
                    Assert.Equal(p.Mean(part, l, h), back.Mean(part, l, h));
                }
        }
        // The layout is the documented one: layers.L.key_basis is [kv_heads, d, d] F32, row i column j of each head's U.
        var header = Header(path);
        Assert.Equal("[2,8,8]", header.GetProperty("layers.1.key_basis").GetProperty("shape").GetRawText());
        Assert.Equal(KvProjectionFile.Format, header.GetProperty("__metadata__").GetProperty("format").GetString());
        Assert.Equal(string.Join(",", p.AllRanks(KvPart.Value)),
            header.GetProperty("__metadata__").GetProperty("value_ranks").GetString());
    }

    private static JsonElement Header(string path)
    {
        var bytes = File.ReadAllBytes(path);
        long n = BitConverter.ToInt64(bytes, 0);
        return JsonDocument.Parse(Encoding.UTF8.GetString(bytes, 8, (int)n)).RootElement.Clone();
    }

    public static TheoryData<string, string> Misfits => new()
    {
        { "layers", "3 layers" },
        { "kv_heads", "1 KV heads" },
        { "head_dim", "head_dim 4" },
    };

    [Theory]
    [MemberData(nameof(Misfits))]
    public void A_file_for_another_shape_is_refused_naming_the_shapes(string what, string expected)
    {
        using var dir = new TempDir();
        var p = what switch
        {
            "layers" => TestProjections.Random(3, 2, 8, seed: 1),
            "kv_heads" => TestProjections.Random(2, 1, 8, seed: 1),
            _ => TestProjections.Random(2, 2, 4, seed: 1),
        };
        string path = Path.Combine(dir.Path, "p.safetensors");
        KvProjectionFile.Save(p, path);
        var e = Assert.Throws<InvalidModelException>(() => KvProjectionFile.Load(path, Model));
        Assert.Contains(path, e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void A_basis_that_is_not_orthogonal_is_refused_naming_its_tensor_and_head()
    {
        using var dir = new TempDir();
        var p = TestProjections.Random(2, 2, 8, seed: 1);
        var bases = p.Bases(KvPart.Value);
        bases[(1 * 2 + 1) * 64 + 3] += 0.01f; // layer 1, head 1
        string path = Path.Combine(dir.Path, "p.safetensors");
        KvProjectionFile.Save(p, path);
        var e = Assert.Throws<InvalidModelException>(() => KvProjectionFile.Load(path, Model));
        Assert.Contains("layers.1.value_basis", e.Message);
        Assert.Contains("head 1", e.Message);
        Assert.Contains("not orthogonal", e.Message);
    }

    [Theory]
    [InlineData("0")]
    [InlineData("9")]
    public void Ranks_out_of_range_are_refused_naming_the_key(string rank)
    {
        using var dir = new TempDir();
        string path = Path.Combine(dir.Path, "p.safetensors");
        KvProjectionFile.Save(TestProjections.Random(2, 2, 8, seed: 1), path);
        // Rewrite the key ranks in the header, keeping its length (the ranks are single digits).
        var bytes = File.ReadAllBytes(path);
        var from = Encoding.ASCII.GetBytes("\"key_ranks\":\"8,8,8,8\"");
        int at = bytes.AsSpan().IndexOf(from);
        Assert.True(at > 0);
        Encoding.ASCII.GetBytes($"\"key_ranks\":\"8,{rank},8,8\"").CopyTo(bytes, at);
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<InvalidModelException>(() => KvProjectionFile.Load(path, Model));
        Assert.True(e.Message.Contains("key_ranks", StringComparison.Ordinal), e.Message);
        Assert.Contains($"rank {rank}", e.Message);
    }

    [Fact]
    public void A_model_file_is_not_taken_for_a_projection()
    {
        using var dir = new TempDir();
        TestModels.WriteHuggingFace(dir.Path, TestModels.Random(Model, seed: 1), WeightType.F32);
        var e = Assert.Throws<InvalidModelException>(() => KvProjectionFile.Load(Path.Combine(dir.Path, "model.safetensors"), Model));
        Assert.Contains("not a KV projection file", e.Message);
    }

    [Fact]
    public void Every_prefix_of_a_basis_is_a_valid_projection_and_a_nested_one()
    {
        var p = TestProjections.Random(1, 1, 8, seed: 7);
        var u = p.Basis(KvPart.Key, 0, 0);
        var previous = new double[64];
        for (int r = 1; r <= 8; r++)
        {
            var ranked = p.WithRanks([r], [r]);
            Assert.Equal(r / 8.0, ranked.KeptFraction, 12);
            // The engine's map to coordinates, C (rows of U_r^T, the rest zero); its projector is C^T C.
            var coordinates = DeviceKvProjection.CoordinateMaps(ranked, KvPart.Key, 0);
            var projector = new float[64];
            for (int i = 0; i < 8; i++)
                for (int j = 0; j < 8; j++)
                    for (int c = 0; c < 8; c++) projector[i * 8 + j] += coordinates[c * 8 + i] * coordinates[c * 8 + j];
            for (int c = r; c < 8; c++) Assert.All(coordinates.AsSpan(c * 8, 8).ToArray(), x => Assert.Equal(0f, x));
            // P = U_r U_r^T is symmetric, idempotent, of trace r, and P_r - P_(r-1) is the rank-one projector of column r.
            double trace = 0;
            for (int i = 0; i < 8; i++)
            {
                trace += projector[i * 8 + i];
                for (int j = 0; j < 8; j++)
                {
                    double pp = 0;
                    for (int k = 0; k < 8; k++) pp += projector[i * 8 + k] * projector[k * 8 + j];
                    Assert.Equal(projector[i * 8 + j], pp, 5);
                    Assert.Equal(projector[i * 8 + j], projector[j * 8 + i], 6);
                    Assert.Equal(previous[i * 8 + j] + (double)u[i * 8 + r - 1] * u[j * 8 + r - 1], projector[i * 8 + j], 5);
                }
            }
            Assert.Equal(r, trace, 4);
            previous = [.. projector.Select(x => (double)x)];
        }
        Assert.Throws<InvalidModelException>(() => p.WithRanks([0], [8]));
        Assert.Throws<InvalidModelException>(() => p.WithRanks([8], [9]));
    }
}
