using System.CommandLine;
using System.Globalization;
using KvIlgpu.Compute;
using KvIlgpu.Engine;
using KvIlgpu.Evaluation;
using KvIlgpu.Projection;
using KvIlgpu.Training;

namespace KvIlgpu.Cli;

/// <summary>kvilgpu kv-projection: MatryoshkaKV's projection files: calibrate (PCA), ranks (the adaptive rank search, or
/// uniform ranks).</summary>
internal static class KvProjectionCommand
{
    public static Command Create() => new("kv-projection", "MatryoshkaKV: per-head K/V projections that keep fewer feature dims")
    {
        Calibrate(),
        Train(),
        Ranks(),
    };

    private static Option<string> ModelOption() =>
        new("--model") { Description = "model: HF folder, .gguf or llama2.c .bin", Required = true };

    private static Option<string> CorpusOption() => new("--corpus")
    {
        Description = "calibration text: a text file, a .ids file of token ids, or the Brown corpus .tgz (its training documents; the " +
            "documents eval holds out are never read)",
        Required = true,
    };

    private static Option<string> DeviceOption() =>
        new("--device") { Description = "auto, cpu, cuda or ilgpu-cpu", DefaultValueFactory = _ => "auto" };

    private static Option<string> OutOption() => new("--out") { Description = "projection file to write (.safetensors)", Required = true };

    private static Command Calibrate()
    {
        var model = ModelOption();
        var corpus = CorpusOption();
        var tokens = new Option<int>("--tokens") { Description = "calibration tokens to read", DefaultValueFactory = _ => 65536 };
        var device = DeviceOption();
        var output = OutOption();
        var cmd = new Command("calibrate", "PCA of every (layer, KV head)'s keys (after RoPE) and values on calibration text")
            { model, corpus, tokens, device, output };
        cmd.SetAction((r, ct) => CliErrors.Run(() =>
        {
            int count = CliValues.Positive(r.GetValue(tokens), "--tokens");
            string corpusPath = CliValues.ExistingFile(r.GetValue(corpus)!, "--corpus");
            string outPath = r.GetValue(output)!;
            CheckWritable(outPath);
            using var engine = Load(r.GetValue(model)!, r.GetValue(device)!);
            var ids = EvaluationCorpus.LoadCalibration(corpusPath, engine.Tokenizer);
            var windows = PcaCalibrator.Windows(ids, engine.Config.MaxSeqLen, count);
            var projection = ProgressDisplay.Steps("calibrating", p => PcaCalibrator.Calibrate(engine, windows, p));
            int used = windows.Sum(w => w.Length);
            KvProjectionFile.Save(projection, outPath, new Dictionary<string, string>
            {
                ["calibration"] = $"{Path.GetFileName(corpusPath)}, {used} tokens in {windows.Count} windows",
            });
            Console.WriteLine($"wrote {outPath}: PCA of {engine.Config.Layers} layers x {engine.Config.KvHeads} KV heads x " +
                $"{engine.Config.HeadDim} dims from {used} tokens");
            return Task.FromResult(0);
        }));
        return cmd;
    }

    private static Command Train()
    {
        var model = ModelOption();
        var init = new Option<string>("--init") { Description = "initial projection (from calibrate)", Required = true };
        var config = new Option<string>("--config") { Description = "projection training config (JSON)", Required = true };
        var device = new Option<string>("--device")
        {
            Description = "where the model's forward and backward run: auto (CUDA if present, else cpu), cpu (managed SIMD), cuda",
            DefaultValueFactory = _ => "auto",
        };
        var output = new Option<string>("--out")
        {
            Description = "trained projection file to write; its checkpoint folder (NAME-training) sits beside it and is resumed",
            Required = true,
        };
        var cmd = new Command("train", "distil the projections: base model frozen, bases kept orthogonal by a Cayley map, a rank " +
            "drawn per head every step") { model, init, config, device, output };
        cmd.SetAction((r, ct) => CliErrors.Run(() =>
        {
            var cfg = ProjectionTrainingConfig.Load(r.GetValue(config)!);
            var kind = DeviceKinds.Parse(r.GetValue(device)!);
            string outPath = r.GetValue(output)!;
            CheckWritable(outPath);
            var start = KvProjectionFile.Load(CliValues.ExistingFile(r.GetValue(init)!, "--init"));
            string modelPath = r.GetValue(model)!;
            TrainingProgress? last = null;
            ProgressDisplay.Steps("training projections", p => ProjectionTrainer.Run(cfg, modelPath, start, outPath,
                new SyncProgress<TrainingProgress>(t =>
                {
                    last = t;
                    if (t.Stage == "training") p.Report((t.Step, t.Steps));
                }), kind, ct));
            Console.WriteLine($"wrote {outPath}: {cfg.Steps} steps" + (last is { } l ? string.Create(CultureInfo.InvariantCulture,
                $", loss {l.Loss:F4}, validation KL at half the dims {l.ValidationLoss:F4}") : ""));
            return Task.FromResult(0);
        }));
        return cmd;
    }

    private static Command Ranks()
    {
        var model = ModelOption();
        var projection = new Option<string>("--projection") { Description = "projection file to search ranks for", Required = true };
        var budget = new Option<string>("--budget")
        {
            Description = "mean kept fraction of feature dims over every head's K and V, such as 1/2",
            Required = true,
        };
        var corpus = CorpusOption();
        var uniform = new Option<bool>("--uniform") { Description = "every head at the budget's rank instead of the search" };
        var prompts = new Option<int>("--prompts")
        {
            Description = "calibration prompts the search measures KL on",
            DefaultValueFactory = _ => 4,
        };
        var promptLength = new Option<int>("--prompt-length")
        {
            Description = "tokens per calibration prompt",
            DefaultValueFactory = _ => 256,
        };
        var taskPrompts = new Option<int>("--task-prompts")
        {
            Description = "synthetic retrieval and copy tasks (over the corpus's training text) added to the calibration " +
                "prompts, each scored at its answer only; 0 for corpus text alone",
            DefaultValueFactory = _ => 0,
        };
        var keepAnswers = new Option<bool>("--keep-answers")
        {
            Description = "with --task-prompts: take a step that changes the full model's greedy answer at a task's answer " +
                "positions only when every step does (then the one that keeps most); KL decides among the rest",
        };
        var device = DeviceOption();
        var output = OutOption();
        var cmd = new Command("ranks", "choose each head's K and V rank under a budget: lower the rank whose step down (d/8) changes the " +
            "next-token distribution least, until the budget is met")
            { model, projection, budget, corpus, uniform, prompts, promptLength, taskPrompts, keepAnswers, device, output };
        cmd.SetAction((r, ct) => CliErrors.Run(() =>
        {
            double share = CliValues.Share(r.GetValue(budget)!, "--budget");
            bool keep = r.GetValue(keepAnswers);
            if (keep && (r.GetValue(taskPrompts) <= 0 || r.GetValue(uniform)))
                throw new InvalidOptionException("--keep-answers", "--keep-answers needs --task-prompts (and no --uniform)");
            int promptCount = CliValues.Positive(r.GetValue(prompts), "--prompts");
            int length = CliValues.Positive(r.GetValue(promptLength), "--prompt-length");
            string corpusPath = CliValues.ExistingFile(r.GetValue(corpus)!, "--corpus");
            string projectionPath = CliValues.ExistingFile(r.GetValue(projection)!, "--projection");
            string outPath = r.GetValue(output)!;
            CheckWritable(outPath);
            using var engine = Load(r.GetValue(model)!, r.GetValue(device)!);
            var p = KvProjectionFile.Load(projectionPath, engine.Config);
            KvProjection result;
            string how;
            if (r.GetValue(uniform))
            {
                result = p.WithUniformRanks(share);
                how = $"uniform rank {KvProjection.UniformRank(share, p.HeadDim)}";
            }
            else
            {
                int tasks = r.GetValue(taskPrompts);
                if (tasks < 0) throw new InvalidOptionException("--task-prompts", $"--task-prompts must be 0 or more, got {tasks}");
                var ids = EvaluationCorpus.LoadCalibration(corpusPath, engine.Tokenizer);
                int window = Math.Min(length, engine.Config.MaxSeqLen);
                var calibration = PcaCalibrator.Windows(ids, window, promptCount * length).Select(RankSearchPrompt.Whole).ToList();
                how = $"searched on {calibration.Count} prompts of {Path.GetFileName(corpusPath)}";
                if (tasks > 0)
                {
                    if (engine.Tokenizer is not { } tok || engine.Config.BosTokenId is not int bos || ids.Count <= 2 * window
                        || corpusPath.EndsWith(".ids", StringComparison.OrdinalIgnoreCase))
                        throw new InvalidOptionException("--task-prompts", "--task-prompts needs a text corpus and a model with a " +
                            "tokenizer and a BOS token");
                    calibration.AddRange(RankSearchPrompt.Tasks(corpusPath, tok, [.. ids], bos, tasks, window));
                    how += $" and {tasks} task prompts scored at their answers";
                }
                if (keep) how += ", keeping their greedy answers";
                result = ProgressDisplay.Steps("searching ranks",
                    progress => RankSearch.Search(engine, p, share, calibration, progress, keep));
            }
            string budgetText = share.ToString("0.####", CultureInfo.InvariantCulture);
            KvProjectionFile.Save(result, outPath, new Dictionary<string, string> { ["ranks"] = $"{how}, budget {budgetText}" });
            Console.WriteLine($"wrote {outPath}: {how}, kept fraction {result.KeptFraction:0.####}; key ranks " +
                $"{string.Join(",", result.AllRanks(KvPart.Key))}; value ranks {string.Join(",", result.AllRanks(KvPart.Value))}");
            return Task.FromResult(0);
        }));
        return cmd;
    }

    private static InferenceEngine Load(string modelPath, string device)
    {
        var kind = DeviceKinds.Parse(device);
        return ProgressDisplay.Load(modelPath, p => InferenceEngine.Load(modelPath, new EngineOptions(kind, MaxBatchSize: 1), p));
    }

    private static void CheckWritable(string path)
    {
        if (Directory.Exists(path)) throw new ArgumentException($"--out {path} is a folder, not a file");
        string? folder = Path.GetDirectoryName(Path.GetFullPath(path));
        if (folder != null && !Directory.Exists(folder)) throw new ArgumentException($"--out {path}: folder {folder} does not exist");
    }
}
