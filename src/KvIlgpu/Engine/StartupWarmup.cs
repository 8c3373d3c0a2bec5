using KvIlgpu.Compute;
using KvIlgpu.Models;
using KvIlgpu.Models.Loading;
using KvIlgpu.Models.Quantization;

namespace KvIlgpu.Engine;

/// <summary>Compiles the CPU decoder's code while a model's weights are still being read. A fresh process compiles every
/// method it calls at its first call (the CLI runs without tiered compilation, so each is compiled fully optimised),
/// and the first prompt paid for all of it: a 64-token prompt ran at a fifth of the warm speed. So
/// <see cref="InferenceEngine.Load"/> starts this on a background thread before it reads the file: a model of the same
/// weight types (read from a GGUF file's or a safetensors file's header; f32 for a llama2.c checkpoint), one layer per
/// type, a few hundred parameters wide, all zeros, goes through the engine's own prefill and decode on one thread, and
/// the real model's first tokens then run compiled code. It runs once per process, only where the managed CPU backend
/// will run the model, and never fails a load: its errors are dropped (the real load and run report their own).</summary>
internal static class StartupWarmup
{
    private static int _started;

    /// <summary>The environment variable that turns the warm-up off for a whole process when set to 0 (for an operator,
    /// and for perf's start-up benchmark, which compares fresh CLI processes with and without it).</summary>
    public const string SwitchVariable = "KVILGPU_WARMUP";

    /// <summary>Starts the warm-up for a model file when it is worth doing: the first load of this process, options that
    /// want it (and no KVILGPU_WARMUP=0), and a device that resolves to the managed CPU backend; null otherwise.</summary>
    public static Task? Start(string modelPath, EngineOptions options)
    {
        if (!options.WarmUp || Environment.GetEnvironmentVariable(SwitchVariable) == "0") return null;
        if (!BackendFactory.ResolvesToCpu(options.Device)) return null;
        if (Interlocked.Exchange(ref _started, 1) != 0) return null;
        return Task.Factory.StartNew(() => Run(modelPath, options), CancellationToken.None, TaskCreationOptions.LongRunning,
            TaskScheduler.Default);
    }

    /// <summary>Runs the warm-up for a model file now, on this thread; false when anything failed (nothing is thrown).</summary>
    internal static bool Run(string modelPath, EngineOptions options)
    {
        try
        {
            var (embedding, matrices, output) = WeightTypes(modelPath);
            var weights = Model(embedding, matrices, output);
            // One thread: the spinning workers would take the core the loader reads on; the kernels are the same code.
            var tiny = options with { Device = DeviceKind.Cpu, CpuThreads = 1, KvMemoryBytes = null, KvProjection = null };
            using var engine = InferenceEngine.FromWeights(weights, tiny);
            // Eight prompt tokens take the several-row products (prefill), the generated ones the one-row products.
            var prompt = Enumerable.Range(1, 8).ToArray();
            foreach (var _ in engine.GenerateAsync(prompt, new GenerationOptions(3, new SamplingOptions(0f))).ToBlockingEnumerable()) { }
            return true;
        }
        catch (Exception)
        {
            // Only a warm-up: whatever went wrong here, the real load and run find and report it themselves.
            return false;
        }
    }

    /// <summary>The token embedding's, the matrices' (distinct, in file order) and the classifier's types (null: tied
    /// to the embedding): from the header of a GGUF file or of a Hugging Face folder's (first) model safetensors file,
    /// f32 for a llama2.c checkpoint.</summary>
    internal static (WeightType Embedding, IReadOnlyList<WeightType> Matrices, WeightType? Output) WeightTypes(string path)
    {
        if (Directory.Exists(path)) return SafetensorsTypes(path);
        if (!File.Exists(path) || !ModelLoader.IsGguf(path)) return (WeightType.F32, [WeightType.F32], null);
        var file = GgufFile.Open(path);
        WeightType? Of(string name) => file.Tensors.TryGetValue(name, out var t) ? GgufFile.WeightTypeOf(t.Type) : null;
        var matrices = file.Tensors.Values.Where(t => t.Name.StartsWith("blk.", StringComparison.Ordinal) && t.Dims.Length == 2)
            .Select(t => GgufFile.WeightTypeOf(t.Type)).OfType<WeightType>().Distinct().ToList();
        if (matrices.Count == 0) matrices.Add(WeightType.F32);
        return (Of("token_embd.weight") ?? WeightType.F32, matrices, Of("output.weight"));
    }

    private static (WeightType, IReadOnlyList<WeightType>, WeightType?) SafetensorsTypes(string dir)
    {
        string? path = File.Exists(System.IO.Path.Combine(dir, "model.safetensors")) ? System.IO.Path.Combine(dir, "model.safetensors")
            : Directory.EnumerateFiles(dir, "model*.safetensors").Order(StringComparer.Ordinal).FirstOrDefault();
        if (path == null) return (WeightType.F32, [WeightType.F32], null);
        var file = SafetensorsFile.Open(path);
        static WeightType? Of(SafetensorsEntry e) => SafetensorsFile.WeightTypeOf(e.DType);
        var matrices = file.Entries.Values.Where(e => e.Name.Contains(".layers.", StringComparison.Ordinal) && e.Shape.Length == 2)
            .Select(Of).OfType<WeightType>().Distinct().ToList();
        if (matrices.Count == 0) matrices.Add(WeightType.F32);
        WeightType? Named(string suffix) => file.Entries.Values.Where(e => e.Name.EndsWith(suffix, StringComparison.Ordinal))
            .Select(Of).FirstOrDefault(t => t != null);
        // A sharded model's classifier may sit in another shard: then it is taken as tied (the embedding's type).
        return (Named("embed_tokens.weight") ?? matrices[0], matrices, Named("lm_head.weight"));
    }

    /// <summary>A model of zeros (norms of ones) with grouped-query attention, 64-wide heads and every width a whole
    /// number of 256-value blocks, each layer's matrices of one of the given types.</summary>
    private static LlamaWeights Model(WeightType embedding, IReadOnlyList<WeightType> matrices, WeightType? output)
    {
        const int Dim = 256, Hidden = 512, Heads = 4, KvHeads = 2, HeadDim = 64, Vocab = 256;
        var config = new ModelConfig
        {
            Dim = Dim, HiddenDim = Hidden, Layers = matrices.Count, Heads = Heads, KvHeads = KvHeads, HeadDim = HeadDim,
            VocabSize = Vocab, MaxSeqLen = 64, TiedEmbeddings = output == null,
        }.Validated("warm-up model");
        WeightTensor Norm(string name) => WeightTensor.FromF32(name, 1, Dim, Enumerable.Repeat(1f, Dim).ToArray());
        var layers = matrices.Select((type, l) => new LayerWeights(Norm($"blk.{l}.attn_norm"),
            Zeros($"blk.{l}.attn_q", Heads * HeadDim, Dim, type), Zeros($"blk.{l}.attn_k", KvHeads * HeadDim, Dim, type),
            Zeros($"blk.{l}.attn_v", KvHeads * HeadDim, Dim, type), Zeros($"blk.{l}.attn_output", Dim, Heads * HeadDim, type),
            null, null, null, Norm($"blk.{l}.ffn_norm"), Zeros($"blk.{l}.ffn_gate", Hidden, Dim, type),
            Zeros($"blk.{l}.ffn_down", Dim, Hidden, type), Zeros($"blk.{l}.ffn_up", Hidden, Dim, type))).ToList();
        var embeddingTable = Zeros("token_embd", Vocab, Dim, embedding);
        var classifier = output is { } o ? Zeros("output", Vocab, Dim, o) : embeddingTable;
        return new LlamaWeights(config, embeddingTable, layers, Norm("output_norm"), classifier, "warm-up model");
    }

    private static WeightTensor Zeros(string name, int rows, int cols, WeightType type) => type switch
    {
        WeightType.F32 => WeightTensor.FromF32(name, rows, cols, new float[rows * cols]),
        WeightType.F16 or WeightType.BF16 => WeightTensor.From16(name, rows, cols, type, new ushort[rows * cols]),
        _ => WeightTensor.FromBlocks(name, rows, cols, type, new byte[rows * QuantFormats.RowBytes(type, cols)]),
    };
}
