using System.CommandLine;
using KvIlgpu.Models;
using KvIlgpu.Models.Loading;
using KvIlgpu.Models.Saving;

namespace KvIlgpu.Cli;

/// <summary>`kvilgpu convert`: any model the engine loads, written as a llama.cpp GGUF (for llama-quantize, llama-bench,
/// or this engine) or as a Hugging Face folder (to store it in another precision, or for HF transformers).</summary>
internal static class ConvertCommand
{
    /// <summary>A Hugging Face folder's tokenizer and chat files, copied as they are when the source is such a folder.</summary>
    private static readonly string[] TokenizerFiles =
        ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "tokenizer.model"];

    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "model: HF folder, .gguf or llama2.c .bin", Required = true };
        var output = new Option<string>("--out")
        {
            Description = "a .gguf file to write, or a folder to write as a Hugging Face model (config.json, model.safetensors)",
            Required = true,
        };
        var dtype = new Option<string>("--dtype")
        {
            Description = "matrix type: keep (as loaded, quantised blocks included), f32, f16 or bf16",
            DefaultValueFactory = _ => "keep",
        };
        var cmd = new Command("convert", "write a model as a GGUF file of llama.cpp's llama architecture (tokenizer not embedded) " +
            "or as a Hugging Face folder (the source folder's tokenizer files copied)")
        {
            model, output, dtype,
        };
        cmd.SetAction((r, ct) => CliErrors.Run(() =>
        {
            WeightType? type = r.GetValue(dtype) switch
            {
                "keep" => null,
                "f32" => WeightType.F32,
                "f16" => WeightType.F16,
                "bf16" => WeightType.BF16,
                var other => throw new InvalidOptionException("--dtype", $"--dtype '{other}' is not one of keep, f32, f16, bf16"),
            };
            string path = r.GetValue(model)!, outPath = r.GetValue(output)!;
            var w = ProgressDisplay.Load(path, p => ModelLoader.Load(path, p));
            if (outPath.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase))
            {
                GgufWriter.Write(outPath, w, type);
                Console.WriteLine($"wrote {outPath} ({new FileInfo(outPath).Length / 1e6:F1} MB); its tokenizer is not embedded: " +
                    "give --tokenizer when running it");
                return Task.FromResult(0);
            }
            if (Path.GetFullPath(outPath).TrimEnd('/') == Path.GetFullPath(path).TrimEnd('/'))
                throw new InvalidOptionException("--out", $"--out '{outPath}' is the model being read: write to another folder");
            HuggingFaceFolderWriter.Write(outPath, w, type);
            var copied = Directory.Exists(path)
                ? TokenizerFiles.Where(f => File.Exists(Path.Combine(path, f))).ToList() : [];
            foreach (var f in copied) File.Copy(Path.Combine(path, f), Path.Combine(outPath, f), overwrite: true);
            long bytes = new FileInfo(Path.Combine(outPath, "model.safetensors")).Length;
            Console.WriteLine($"wrote {outPath} (model.safetensors {bytes / 1e6:F1} MB" + (copied.Count > 0
                ? $"; copied {string.Join(", ", copied)})" : "; no tokenizer: give --tokenizer when running it)"));
            return Task.FromResult(0);
        }));
        return cmd;
    }
}
