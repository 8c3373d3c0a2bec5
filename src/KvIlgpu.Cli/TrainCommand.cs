using System.CommandLine;
using KvIlgpu.Compute;
using KvIlgpu.Training;
using Spectre.Console;

namespace KvIlgpu.Cli;

/// <summary>kvilgpu train: trains a model (and its tokenizer) from a JSON config into an HF folder; resumes from the
/// folder's checkpoint when there is one.</summary>
internal static class TrainCommand
{
    public static Command Create()
    {
        var config = new Option<string>("--config") { Description = "training config (JSON)", Required = true };
        var output = new Option<string>("--out") { Description = "output folder (resumed when it holds a checkpoint)", Required = true };
        var device = new Option<string>("--device")
        {
            Description = "where the forward and backward run: auto (CUDA if present, else cpu), cpu (managed SIMD), cuda or ilgpu-cpu " +
                "(ILGPU kernels)",
            DefaultValueFactory = _ => "auto",
        };
        var cmd = new Command("train", "train a model and its tokenizer on the Brown corpus plus long-range tasks") { config, output,
            device };
        cmd.SetAction((r, ct) => CliErrors.Run(() =>
        {
            var cfg = TrainingConfig.Load(r.GetValue(config)!);
            string outDir = r.GetValue(output)!;
            var deviceKind = DeviceKinds.Parse(r.GetValue(device)!);
            CliValues.WritableFolder(outDir, "--out"); // before the corpus is read or anything allocated
            TrainingProgress? last = null;
            if (Console.IsErrorRedirected)
                Trainer.Run(cfg, outDir, new SyncProgress<TrainingProgress>(p =>
                {
                    if (p.Stage != "training" || p.Step % Math.Max(1, cfg.LastStep / 20) == 0 || p.Step == p.Steps)
                        Console.Error.WriteLine(p.Stage == "training" ? Line(p) : p.Stage + " ...");
                    last = p;
                }), deviceKind, ct);
            else
                ProgressDisplay.Err.Progress().AutoClear(false)
                    .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                    .Start(ctx =>
                    {
                        var task = ctx.AddTask("starting", maxValue: cfg.LastStep);
                        Trainer.Run(cfg, outDir, new SyncProgress<TrainingProgress>(p =>
                        {
                            task.Description = p.Stage == "training" ? Markup.Escape(Line(p)) : p.Stage;
                            task.Value = p.Step;
                            last = p;
                        }), deviceKind, ct);
                    });
            Console.WriteLine($"trained {cfg.LastStep} steps into {outDir}: " + (last is { } l ? Line(l) : ""));
            return Task.FromResult(0);
        }));
        return cmd;
    }

    private static string Line(TrainingProgress p) =>
        $"step {p.Step}/{p.Steps} loss {p.Loss:F3}" + (p.ValidationLoss is float v ? $" val {v:F3}" : "") + $" {p.TokensPerSecond:F0} " +
            $"tok/s lr {p.LearningRate:G3}";
}
