using KvIlgpu.Compute;
using KvIlgpu.Engine;
using KvIlgpu.Models;
using KvIlgpu.Models.Loading;
using KvIlgpu.Tests.Support;

namespace KvIlgpu.Tests.Engine;

/// <summary>The start-up warm-up (<see cref="StartupWarmup"/>): it must build its model in the file's own weight types,
/// run through the engine without failing, and change nothing a real run computes, even while one is running.</summary>
public class StartupWarmupTests
{
    /// <summary>The types the warm-up reads from a GGUF header against the types the loader gives the same file, for a
    /// llama-quantize-style mix, a block-of-32 file and a 16-bit one; and the warm-up in those types runs to the end.</summary>
    [Theory]
    [InlineData("k-mix")]
    [InlineData("q8_0")]
    [InlineData("f16")]
    public void Warm_up_takes_the_files_weight_types_and_runs_through_the_engine(string kind)
    {
        var w = TestModels.SuperBlockModel(seed: 61);
        using var dir = new TempDir();
        string path = dir.File("m.gguf");
        Func<string, GgufType> typeOf = kind switch
        {
            "k-mix" => TestModels.Q4KMType,
            "q8_0" => _ => GgufType.Q8_0,
            _ => _ => GgufType.F16,
        };
        TestModels.WriteGguf(path, w, typeOf);
        var loaded = ModelLoader.Load(path);

        var (embedding, matrices, output) = StartupWarmup.WeightTypes(path);
        var expected = loaded.Layers.SelectMany(l => new[] { l.Wq, l.Wk, l.Wv, l.Wo, l.WGate, l.WUp, l.WDown })
            .Select(t => t.Type).Distinct().OrderBy(t => t).ToList();
        Assert.Equal(expected, matrices.OrderBy(t => t).ToList());
        Assert.Equal(loaded.TokenEmbedding.Type, embedding);
        Assert.Equal(loaded.Config.TiedEmbeddings ? null : loaded.Output.Type, output);
        Assert.True(StartupWarmup.Run(path, new EngineOptions(DeviceKind.Cpu)), $"the warm-up failed for {kind}");
    }

    [Fact]
    public void A_llama2c_checkpoint_warms_up_in_f32_and_a_damaged_header_fails_quietly()
    {
        var w = TestModels.Random(TestModels.Config(), seed: 62);
        using var dir = new TempDir();
        string path = dir.File("m.bin");
        TestModels.WriteLlama2c(path, w);
        var (embedding, matrices, output) = StartupWarmup.WeightTypes(path);
        Assert.Equal(WeightType.F32, embedding);
        Assert.Equal([WeightType.F32], matrices);
        Assert.Null(output);
        Assert.True(StartupWarmup.Run(path, new EngineOptions(DeviceKind.Cpu)));
        // A damaged header is the real loader's to report: the warm-up only returns false.
        File.WriteAllBytes(dir.File("bad.gguf"), "GGUF\u0003"u8.ToArray());
        Assert.False(StartupWarmup.Run(dir.File("bad.gguf"), new EngineOptions(DeviceKind.Cpu)));
    }

    /// <summary>A Hugging Face folder's dtypes from its safetensors header, against the loader's, in f16 and bf16 (the
    /// projection files beside a model, also safetensors, are not taken for it).</summary>
    [Theory]
    [InlineData(WeightType.BF16)]
    [InlineData(WeightType.F16)]
    public void A_hugging_face_folder_warms_up_in_its_own_dtype(WeightType type)
    {
        var w = TestModels.Random(TestModels.Config(dim: 64, hidden: 96), seed: 64);
        using var dir = new TempDir();
        TestModels.WriteHuggingFace(dir.Path, w, type);
        File.WriteAllBytes(System.IO.Path.Combine(dir.Path, "kv-projection.safetensors"), [0, 0]);
        var loaded = ModelLoader.Load(dir.Path);
        var (embedding, matrices, output) = StartupWarmup.WeightTypes(dir.Path);
        Assert.Equal([loaded.Layers[0].Wq.Type], matrices);
        Assert.Equal(type, matrices[0]);
        Assert.Equal(loaded.TokenEmbedding.Type, embedding);
        Assert.Equal(loaded.Config.TiedEmbeddings ? null : loaded.Output.Type, output);
        Assert.True(StartupWarmup.Run(dir.Path, new EngineOptions(DeviceKind.Cpu)));
    }

    /// <summary>A real engine's greedy tokens while two warm-ups run beside it on other threads are the tokens an engine
    /// loaded with the warm-up off gives alone (the warm-ups share the process's static tables and compiled code with
    /// it; they must share nothing else).</summary>
    [Fact]
    public async Task Warm_ups_beside_a_run_change_none_of_its_tokens()
    {
        var w = TestModels.Random(TestModels.Config(dim: 256, hidden: 512, heads: 4, kvHeads: 2, vocab: 64, seq: 48), seed: 63);
        using var dir = new TempDir();
        string path = dir.File("m.gguf");
        TestModels.WriteGguf(path, w, GgufType.Q4_K);
        int[] prompt = [1, 9, 4, 17, 3];
        async Task<List<int>> Generate(InferenceEngine engine)
        {
            var ids = new List<int>();
            await foreach (var t in engine.GenerateAsync(prompt, new GenerationOptions(12, StopAtEos: false))) ids.Add(t.Id);
            return ids;
        }
        List<int> alone;
        using (var engine = InferenceEngine.Load(path, new EngineOptions(DeviceKind.Cpu, WarmUp: false))) alone = await Generate(engine);

        using (var engine = InferenceEngine.Load(path, new EngineOptions(DeviceKind.Cpu, WarmUp: true)))
        {
            var warmUps = Enumerable.Range(0, 2).Select(_ => Task.Run(() => StartupWarmup.Run(path, new EngineOptions(DeviceKind.Cpu))))
                .ToArray();
            var beside = await Generate(engine);
            Assert.All(await Task.WhenAll(warmUps), Assert.True);
            Assert.Equal(alone, beside);
        }
    }

    [Fact]
    public void Auto_skips_the_cuda_probe_exactly_when_the_driver_library_is_absent()
    {
        Assert.True(BackendFactory.ResolvesToCpu(DeviceKind.Cpu));
        Assert.False(BackendFactory.ResolvesToCpu(DeviceKind.Cuda));
        Assert.False(BackendFactory.ResolvesToCpu(DeviceKind.IlgpuCpu));
        Assert.Equal(!CudaDriver.IsPresent, BackendFactory.ResolvesToCpu(DeviceKind.Auto));
        // Where the probe says so, Auto's backend is the managed one, as the full probe found on such machines.
        if (!CudaDriver.IsPresent)
        {
            using var backend = BackendFactory.Create(DeviceKind.Auto);
            Assert.Equal(DeviceKind.Cpu, backend.Kind);
        }
    }
}
