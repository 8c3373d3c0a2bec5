using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using KvIlgpu.Compute;
using KvIlgpu.Engine;
using KvIlgpu.Evaluation;

namespace KvIlgpu.Cli;

/// <summary>kvilgpu passkey: retrieval accuracy by context length and needle depth, with the full cache or a policy.</summary>
internal static class PasskeyCommand
{
    public static Command Create()
    {
        var model = new Option<string?>("--model") { Description = "model (default: the shipped default model)" };
        var lengths = new Option<string>("--lengths")
        {
            Description = "comma-separated prompt lengths in tokens",
            DefaultValueFactory = _ => "256,512,1024",
        };
        var depths = new Option<string>("--depths")
        {
            Description = "comma-separated needle depths (0..1)",
            DefaultValueFactory = _ => "0.1,0.3,0.5,0.7,0.9",
        };
        var trials = new Option<int>("--trials") { Description = "trials per cell", DefaultValueFactory = _ => 10 };
        var device = new Option<string>("--device") { Description = "auto, cpu, cuda or ilgpu-cpu", DefaultValueFactory = _ => "auto" };
        var json = new Option<bool>("--json") { Description = "print the cells as JSON" };
        var cmd = new Command("passkey", "passkey retrieval accuracy by context length and needle depth") { model, lengths, depths,
            trials, device, json };
        var compression = new CompressionCliOptions();
        compression.AddTo(cmd);
        var projection = new ProjectionCliOptions();
        projection.AddTo(cmd);
        var storage = new KvStorageCliOption();
        storage.AddTo(cmd);
        cmd.SetAction((r, ct) => CliErrors.Run(() =>
        {
            string modelPath = r.GetValue(model) ?? DefaultModel.Path;
            var ls = CliValues.Ints(r.GetValue(lengths)!, "--lengths", 9);
            var ds = CliValues.Numbers(r.GetValue(depths)!, "--depths", 0, 1);
            CliValues.Positive(r.GetValue(trials), "--trials");
            var options = compression.Build(r); // checked before the model loads
            var kvProjection = projection.Build(r);
            var thinK = projection.BuildThinK(r);
            var kvStorage = storage.Build(r);
            using var engine = ProgressDisplay.Load(modelPath, p => InferenceEngine.Load(modelPath,
                new EngineOptions(DeviceKinds.Parse(r.GetValue(device)!), MaxBatchSize: 16, KvProjection: kvProjection,
                    KvStorage: kvStorage), p));
            var grid = Passkey.Grid(engine, ls, ds, r.GetValue(trials), _ => options, thinK: thinK);
            if (r.GetValue(json))
            {
                var cells = grid.Select(g => new { length = g.Length, depth = g.Depth, accuracy = g.Accuracy });
                Console.WriteLine(JsonSerializer.Serialize(cells));
                return Task.FromResult(0);
            }
            Console.WriteLine("| length \\ depth | " + string.Join(" | ", ds.Select(d => d.ToString("0.0", CultureInfo.InvariantCulture)))
                + " | mean |");
            Console.WriteLine("|---|" + string.Concat(ds.Select(_ => "---|")) + "---|");
            foreach (var l in ls)
            {
                var row = grid.Where(g => g.Length == l).ToList();
                Console.WriteLine($"| {l} | " + string.Join(" | ", row.Select(g => g.Accuracy.ToString("P0",
                    CultureInfo.InvariantCulture))) + $" | {row.Average(g => g.Accuracy).ToString("P0", CultureInfo.InvariantCulture)} |");
            }
            Console.WriteLine($"overall: {grid.Average(g => g.Accuracy).ToString("P1", CultureInfo.InvariantCulture)} over " +
                $"{grid.Count * r.GetValue(trials)} trials");
            return Task.FromResult(0);
        }));
        return cmd;
    }
}

/// <summary>The model this project ships (weights/default), copied beside the CLI at build time.</summary>
internal static class DefaultModel
{
    public static string Path => System.IO.Path.Combine(AppContext.BaseDirectory, "weights", "default");
}
