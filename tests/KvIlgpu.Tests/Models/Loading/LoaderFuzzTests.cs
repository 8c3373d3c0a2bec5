using System.Diagnostics;
using System.Text.Json.Nodes;
using KvIlgpu.Compute;
using KvIlgpu.Models;
using KvIlgpu.Models.Loading;
using KvIlgpu.Tests.Support;

namespace KvIlgpu.Tests.Models.Loading;

/// <summary>A seeded mutation fuzzer over the model formats and config.json, driving the loader API in-process: byte
/// flips (anywhere, and in the headers), truncation at random offsets, header counts and sizes set to extremes, and
/// config.json values of the wrong type or out of range. Each case either loads, and then a forward pass gives finite
/// logits, or throws <see cref="InvalidModelException"/> naming the file; never another exception type, never for
/// long. A failure prints the case's seed and mutation, so it can be replayed.</summary>
public class LoaderFuzzTests
{
    private const int CasesPerFormat = 400;

    public static TheoryData<string> Formats => new() { "llama2c", "safetensors-f32", "safetensors-bf16", "gguf-f16", "gguf-q8_0",
        "gguf-k-quants", "config.json" };

    [Theory]
    [MemberData(nameof(Formats))]
    public void Every_corrupted_file_loads_cleanly_or_fails_with_the_loader_error(string format)
    {
        using var dir = new TempDir();
        // The k-quants' super-blocks need rows a multiple of 256 long.
        var weights = format == "gguf-k-quants"
            ? TestModels.Random(TestModels.Config(dim: 256, hidden: 256, layers: 1, heads: 4, kvHeads: 2, vocab: 40, seq: 24), seed: 7)
            : TestModels.Random(TestModels.Config(dim: 32, hidden: 48, layers: 2, heads: 4, kvHeads: 2, vocab: 40, seq: 24), seed: 7);
        string model = Write(format, dir, weights);
        string target = format == "config.json" ? Path.Combine(model, "config.json")
            : format.StartsWith("safetensors", StringComparison.Ordinal) ? Path.Combine(model, "model.safetensors") : model;
        var original = File.ReadAllBytes(target);
        var failures = new List<string>();
        var rng = new Random(format.Sum(c => c) * 7919);
        for (int i = 0; i < CasesPerFormat && failures.Count < 5; i++)
        {
            int seed = rng.Next();
            var (bytes, what) = format == "config.json" ? MutateJson(original, new Random(seed)) : Mutate(original, new Random(seed));
            File.WriteAllBytes(target, bytes);
            var clock = Stopwatch.StartNew();
            string? failure = Check(model);
            if (clock.Elapsed > TimeSpan.FromSeconds(5)) failure ??= $"took {clock.Elapsed.TotalSeconds:F1} s";
            if (failure != null) failures.Add($"case {i} (seed {seed}, {what}): {failure}");
        }
        File.WriteAllBytes(target, original);
        Assert.True(failures.Count == 0, $"{format}:\n{string.Join("\n", failures)}");
        Assert.Null(Check(model)); // the undamaged file loads and runs
    }

    private static string Write(string format, TempDir dir, LlamaWeights w)
    {
        switch (format)
        {
            case "llama2c":
                TestModels.WriteLlama2c(dir.File("m.bin"), w);
                return dir.File("m.bin");
            case "gguf-f16":
                TestModels.WriteGguf(dir.File("m.gguf"), w, GgufType.F16);
                return dir.File("m.gguf");
            case "gguf-q8_0":
                TestModels.WriteGguf(dir.File("m.gguf"), w, GgufType.Q8_0);
                return dir.File("m.gguf");
            case "gguf-k-quants": // as llama-quantize's Q4_K_M mixes them
                TestModels.WriteGguf(dir.File("m.gguf"), w, name => name.Contains("attn_v") || name == "output.weight" ? GgufType.Q6_K
                    : name.Contains("ffn_down") ? GgufType.Q5_K : GgufType.Q4_K);
                return dir.File("m.gguf");
            default:
                TestModels.WriteHuggingFace(dir.File("hf"), w, format.EndsWith("bf16", StringComparison.Ordinal) ? WeightType.BF16
                    : WeightType.F32);
                return dir.File("hf");
        }
    }

    /// <summary>Null when the case behaved: loaded and ran with finite logits, or refused with the loader's error.</summary>
    private static string? Check(string model)
    {
        LlamaWeights weights;
        try { weights = ModelLoader.Load(model); }
        catch (InvalidModelException e)
        {
            return e.Message.Contains(model, StringComparison.Ordinal) ? null : $"the error does not name {model}: {e.Message}";
        }
        catch (Exception e) { return $"{e.GetType().Name}: {e.Message}"; }
        try
        {
            using var m = new LlamaModel(weights, Backends.Get("cpu"));
            using var cache = m.CreateCache();
            int n = Math.Min(4, weights.Config.MaxSeqLen);
            var logits = m.Forward(cache, Enumerable.Range(0, n).Select(t => t % weights.Config.VocabSize).ToArray(), allLogits: true);
            return logits.All(float.IsFinite) ? null : "loaded, but the forward pass gives non-finite logits";
        }
        catch (Exception e) { return $"loaded, but the forward pass threw {e.GetType().Name}: {e.Message}"; }
    }

    private static (byte[], string) Mutate(byte[] original, Random rng) => rng.Next(5) switch
    {
        0 => Mutations.BitFlips(original, rng),
        1 => Mutations.HeaderByte(original, rng),
        2 => Mutations.Truncation(original, rng),
        3 => Mutations.Int32Field(original, rng, [0, -1, 1, int.MaxValue, int.MinValue, 1 << 20, 1 << 30, rng.Next()], headerOnly: true),
        _ => Mutations.Int64Field(original, rng, [0, -1, long.MaxValue, long.MinValue, 1L << 40, 1L << 62, rng.NextInt64()]),
    };

    private static (byte[], string) MutateJson(byte[] original, Random rng)
    {
        var root = JsonNode.Parse(original)!.AsObject();
        var keys = root.Select(p => p.Key).ToList();
        string key = keys[rng.Next(keys.Count)];
        JsonNode?[] values = [JsonValue.Create("abc"), JsonValue.Create(-1), JsonValue.Create(0), JsonValue.Create(1e30), null,
            new JsonArray(), new JsonObject(), JsonValue.Create(3.5), JsonValue.Create(int.MaxValue), JsonValue.Create(true)];
        if (rng.Next(8) == 0)
        {
            root.Remove(key);
            return (System.Text.Encoding.UTF8.GetBytes(root.ToJsonString()), $"{key} removed");
        }
        var v = values[rng.Next(values.Length)];
        root[key] = v;
        return (System.Text.Encoding.UTF8.GetBytes(root.ToJsonString()), $"{key} set to {v?.ToJsonString() ?? "null"}");
    }
}
