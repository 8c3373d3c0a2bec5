using System.CommandLine;
using KvIlgpu.Models;
using KvIlgpu.Models.Loading;
using KvIlgpu.Models.Saving;

namespace KvIlgpu.Cli;

/// <summary>`kvilgpu convert`: any model the engine loads, written as a llama.cpp GGUF (for llama-quantize, llama-bench,
/// or this engine).</summary>
internal static class ConvertCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "model: HF folder, .gguf or llama2.c .bin", Required = true };
        var output = new Option<string>("--out") { Description = "the GGUF file to write", Required = true };
        var dtype = new Option<string>("--dtype")
        {
            Description = "matrix type: keep (as loaded, quantised blocks included), f32, f16 or bf16",
            DefaultValueFactory = _ => "keep",
        };
        var cmd = new Command("convert", "write a model as a GGUF file of llama.cpp's llama architecture (tokenizer not embedded)")
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
            GgufWriter.Write(outPath, w, type);
            Console.WriteLine($"wrote {outPath} ({new FileInfo(outPath).Length / 1e6:F1} MB); its tokenizer is not embedded: give " +
                "--tokenizer when running it");
            return Task.FromResult(0);
        }));
        return cmd;
    }
}
