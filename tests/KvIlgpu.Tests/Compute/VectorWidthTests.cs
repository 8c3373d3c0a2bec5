using System.Runtime.Intrinsics;
using System.Text.Json;
using KvIlgpu.Compute;
using KvIlgpu.Models;
using KvIlgpu.Tests.Support;

namespace KvIlgpu.Tests.Compute;

/// <summary>Switching the dot products' vector width is global state: these tests run alone, after the parallel ones.</summary>
[CollectionDefinition("vector-width", DisableParallelization = true)]
public class VectorWidthGroup;

/// <summary>The Vector512 and Vector256 paths of the weight-row dot products, each run in this process (the Vector512
/// one where the CPU has AVX-512; elsewhere both runs take Vector256), and the runtime's own switch.</summary>
[Collection("vector-width")]
public class VectorWidthTests
{
    private static IEnumerable<bool> Widths() => Vector512.IsHardwareAccelerated ? [true, false] : [false];

    private static void With(bool wide, Action body)
    {
        bool before = SimdMath.UseVector512;
        SimdMath.UseVector512 = wide;
        try { body(); }
        finally { SimdMath.UseVector512 = before; }
    }

    /// <summary>In either width, the one-, two- and two-by-two-row products agree bitwise (batching changes no number)
    /// and match a double-precision sum.</summary>
    [Theory]
    [InlineData(WeightType.F32, 512)]
    [InlineData(WeightType.F32, 1376)]
    [InlineData(WeightType.F32, 100)]
    [InlineData(WeightType.BF16, 1376)]
    [InlineData(WeightType.F16, 576)]
    [InlineData(WeightType.F16, 40)]
    public void Every_product_agrees_bitwise_in_either_width(WeightType type, int n)
    {
        var rng = new Random(n * 3 + (int)type);
        float[] R() => Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble() * 2 - 1).ToArray();
        float[] x0 = R(), x1 = R();
        var w0 = WeightTensor.FromF32("w0", 1, n, R()).ConvertTo(type);
        var w1 = WeightTensor.FromF32("w1", 1, n, R()).ConvertTo(type);
        bool bf16 = type == WeightType.BF16;
        var kind = type switch
        {
            WeightType.F32 => SimdMath.WeightKind.F32,
            WeightType.BF16 => SimdMath.WeightKind.BF16,
            _ => SimdMath.WeightKind.F16,
        };
        float Dot(float[] x, WeightTensor w) => type == WeightType.F32 ? SimdMath.Dot(x, w.F32) : SimdMath.Dot(x, w.Bits16, bf16);
        foreach (bool wide in Widths())
            With(wide, () =>
            {
                // The 16-bit products read their activation rows in pair order, which depends on the width.
                float[] p0 = x0, p1 = x1;
                if (type != WeightType.F32)
                {
                    p0 = new float[n]; p1 = new float[n];
                    SimdMath.ToPairOrder(x0, p0);
                    SimdMath.ToPairOrder(x1, p1);
                }
                float[] single = [Dot(p0, w0), Dot(p0, w1), Dot(p1, w0), Dot(p1, w1)];
                var (a, b) = SimdMath.Dot2(p0, p1, w0.F32, w0.Bits16, kind);
                var block = type == WeightType.F32 ? SimdMath.Dot2x2(x0, x1, w0.F32, w1.F32)
                    : SimdMath.Dot2x2(p0, p1, w0.Bits16, w1.Bits16, bf16);
                Assert.Equal(single[0], a);
                Assert.Equal(single[2], b);
                Assert.Equal(single, new[] { block.X0W0, block.X0W1, block.X1W0, block.X1W1 });
                var wf = w1.ToFloat();
                Assert.Equal(Enumerable.Range(0, n).Sum(i => (double)x1[i] * wf[i]), single[3], 1e-4);
            });
    }

    /// <summary>A whole model in each width matches the plain reference forward pass, prefill and decode.</summary>
    [Theory]
    [InlineData(WeightType.F32, 1e-4)]
    [InlineData(WeightType.BF16, 3e-2)]
    public void A_model_matches_the_reference_in_either_width(WeightType type, double tolerance)
    {
        var w = TestModels.Random(TestModels.Config(dim: 128, hidden: 160, vocab: 64), seed: 51);
        var stored = type == WeightType.F32 ? w : w.ConvertMatrices(type);
        var reference = ReferenceLlama.From(stored);
        int[] tokens = [1, 17, 33, 5, 60, 2];
        var expected = tokens.Select(t => reference.Step(t).Select(v => (float)v).ToArray()).ToList();
        foreach (bool wide in Widths())
            With(wide, () =>
            {
                using var model = new LlamaModel(stored, new ManagedSimdBackend(2), maxChunkRows: 4);
                using var cache = model.CreateCache();
                var all = model.Forward(cache, tokens.AsSpan(0, 4), allLogits: true);
                for (int i = 0; i < 4; i++)
                    Compare.Close(all.AsSpan(i * 64, 64), expected[i], tolerance,
                        $"{(wide ? "Vector512" : "Vector256")}, prefill row {i}");
                for (int i = 4; i < tokens.Length; i++)
                    Compare.Close(model.Forward(cache, [tokens[i]]), expected[i], tolerance,
                        $"{(wide ? "Vector512" : "Vector256")}, decode {i}");
            });
    }

    /// <summary>The CLI takes the wide order only when asked (KVILGPU_SIMD=vector512) on a CPU with AVX-512, and
    /// DOTNET_EnableAVX512=0, the runtime's switch, keeps it off even then (its device line says which ran).</summary>
    [Fact]
    public void The_wide_order_is_opt_in_and_the_runtime_switch_turns_it_off()
    {
        using var dir = new TempDir();
        TestModels.WriteLlama2c(dir.File("m.bin"), TestModels.Random(TestModels.Config(dim: 64, hidden: 96), seed: 52));
        string Device(Dictionary<string, string> env)
        {
            var (code, stdout, stderr) = CliRunner.RunProgram("KvIlgpu.Cli.dll", null, env, "generate", "--model", dir.File("m.bin"),
                "--prompt-ids", "1,5", "--max-tokens", "4", "--temperature", "0", "--device", "cpu", "--json");
            Assert.True(code == 0, stderr);
            return JsonDocument.Parse(stdout).RootElement.GetProperty("device").GetString()!;
        }
        Assert.Contains("Vector256", Device([]));
        Assert.Contains("Vector256", Device(new()
        {
            ["KVILGPU_SIMD"] = "vector512", ["DOTNET_EnableAVX512"] = "0",
            ["DOTNET_EnableAVX512F"] = "0"
        }));
        Assert.Contains(Vector512.IsHardwareAccelerated ? "Vector512" : "Vector256", Device(new() { ["KVILGPU_SIMD"] = "vector512" }));
    }

    /// <summary>Without AVX-512 (the runtime's switch, as on the team's AVX2-only machines) the matrix products take the
    /// AVX2 blocks (f32 three-by-two, 16-bit two-by-two) where this CPU may take AVX-512's (f32 four-by-three on Vector512,
    /// 16-bit three-by-two): a prompt long enough for all of them, in f32 and in f16 (a GGUF the CLI converts), gives the
    /// same greedy tokens either way.</summary>
    [Fact]
    public void Without_avx512_the_two_row_blocks_give_the_same_tokens()
    {
        using var dir = new TempDir();
        TestModels.WriteLlama2c(dir.File("m.bin"), TestModels.Random(TestModels.Config(dim: 96, hidden: 160), seed: 53));
        var (converted, _, convertError) = CliRunner.Run("convert", "--model",
            dir.File("m.bin"), "--out", dir.File("m16.gguf"), "--dtype", "f16");
        Assert.True(converted == 0, convertError);
        foreach (var model in new[] { dir.File("m.bin"), dir.File("m16.gguf") })
        {
            string Tokens(Dictionary<string, string> env)
            {
                var (code, stdout, stderr) = CliRunner.RunProgram("KvIlgpu.Cli.dll", null, env, "generate", "--model", model,
                    "--prompt-ids", "1,5,9,2,17,30,4,8,11", "--max-tokens", "6", "--temperature", "0", "--device", "cpu",
                    "--json");
                Assert.True(code == 0, stderr);
                return JsonDocument.Parse(stdout).RootElement.GetProperty("token_ids").GetRawText();
            }
            Assert.Equal(Tokens([]), Tokens(new() { ["DOTNET_EnableAVX512F"] = "0" }));
        }
    }
}
