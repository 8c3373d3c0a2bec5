using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using KvIlgpu.Evaluation;
using KvIlgpu.Models;
using KvIlgpu.Models.Loading;
using KvIlgpu.Models.Saving;
using KvIlgpu.Tokenization;
using KvIlgpu.Training;

namespace KvIlgpu.Projection;

/// <summary>Trains MatryoshkaKV projections by distillation (SPEC section 5): the base model frozen, each basis a Cayley
/// map of a free matrix from its initial (PCA) basis, loss kl_weight KL(teacher || student) + ce_weight cross-entropy with
/// the teacher the same model without projection, and every step a rank drawn for every (layer, KV head), separately for
/// K and V, uniformly from {d/levels, ..., d} (Matryoshka sampling), AdamW on the projection parameters. Checkpoints
/// (parameters, optimiser moments, log, loss plot) go to a folder beside the output file, and a run resumes from it; each
/// step's draws come from (seed, step), so a resumed run repeats an uninterrupted one.</summary>
public static class ProjectionTrainer
{
    /// <summary>The folder of a run's checkpoint: the output file's name without extension, plus "-training".</summary>
    public static string CheckpointFolder(string outPath) => Path.ChangeExtension(Path.GetFullPath(outPath), null) + "-training";

    /// <summary>Trains from init (at full rank) and writes the trained projection (full ranks) to outPath; returns it. device
    /// picks where the model's forward and backward run (as for <c>train</c>: the managed CPU trainer, or the ILGPU kernels
    /// on CUDA); the projections' own small products run on the host either way.</summary>
    public static KvProjection Run(ProjectionTrainingConfig cfg, string modelPath, KvProjection init, string outPath,
        IProgress<TrainingProgress>? progress = null, Compute.DeviceKind device = Compute.DeviceKind.Cpu, CancellationToken ct = default)
    {
        var ops = TrainingBackends.Create(device);
        try { return Train(cfg, modelPath, init, outPath, progress, ops, ct); }
        finally { ops?.Dispose(); }
    }

    internal static KvProjection Train(ProjectionTrainingConfig cfg, string modelPath, KvProjection init, string outPath,
        IProgress<TrainingProgress>? progress, ITrainingOps? ops, CancellationToken ct)
    {
        progress?.Report(new TrainingProgress("loading model", 0, cfg.Steps, 0, null, 0, 0));
        var weights = ModelLoader.Load(modelPath);
        var c = weights.Config;
        init = init.CheckedFor(c, init.Source ?? "the initial projection");
        progress?.Report(new TrainingProgress("reading corpus", 0, cfg.Steps, 0, null, 0, 0));
        int? eos = c.EosTokenIds.Count > 0 ? c.EosTokenIds[0] : null;
        var tokenizer = cfg.Corpus.EndsWith(".ids", StringComparison.OrdinalIgnoreCase) ? null
            : TokenizerLoader.ForModel(modelPath, c.VocabSize, c.BosTokenId, eos);
        var stream = EvaluationCorpus.LoadCalibration(cfg.Corpus, tokenizer).ToArray();
        int len = Math.Min(cfg.SequenceLength, c.MaxSeqLen) + 1;
        const int ValidationWindows = 4;
        if (stream.Length < len * (ValidationWindows + 2))
            throw new InvalidDataException($"{cfg.Corpus}: {stream.Length} tokens are too few for sequences of {len - 1}");
        var validation = Enumerable.Range(0, ValidationWindows)
            .Select(i => stream[(stream.Length - (i + 1) * len)..(stream.Length - i * len)]).ToList();
        int trainEnd = stream.Length - ValidationWindows * len;
        // Synthetic tasks as the base trainer draws them, over the calibration documents as filler.
        Func<Random, int[]>? task = null;
        if (cfg.TaskFraction > 0)
        {
            if (tokenizer == null || c.BosTokenId is not int bos)
                throw new InvalidDataException($"{cfg.Corpus}: task_fraction needs a text corpus and a model with a tokenizer and a " +
                    "BOS token");
            var docs = BrownCorpus.TrainingTexts(cfg.Corpus);
            var taskConfig = new TrainingConfig
            {
                SequenceLength = len - 1, TaskFraction = 1, TaskMinLength = cfg.TaskMinLength, TaskWeights = cfg.TaskWeights,
            };
            var trainStream = stream.AsSpan(0, trainEnd).ToArray();
            task = rng => Trainer.Sample(rng, taskConfig, tokenizer, trainStream, docs, bos).Ids;
        }

        var model = TrainableLlama.FromWeights(weights);
        if (ops != null) model.UseOps(ops);
        var parallel = new ParallelOptions { CancellationToken = ct, MaxDegreeOfParallelism = model.Ops.ParallelMicroBatches ? -1 : 1 };
        var projection = new TrainableKvProjection(model, init);
        var opt = new AdamW(cfg.LearningRate, weightDecay: 0, clipNorm: cfg.Clip, warmupSteps: cfg.Warmup, totalSteps: cfg.Steps);
        string folder = CheckpointFolder(outPath);
        var log = new List<string>();
        double seconds = 0;
        int d = init.HeadDim, units = init.Layers * init.KvHeads, level = Math.Max(1, d / cfg.RankLevels);
        var full = Enumerable.Repeat(d, units).ToArray();
        var half = Enumerable.Repeat(KvProjection.UniformRank(0.5, d), units).ToArray();
        int Rank(int lv) => Math.Min(d, level * lv);
        // With initial_kl weighting, the initial basis's KL at every drawn level (on fixed training windows), measured
        // before a checkpoint is read back, so a resumed run weighs its levels as the uninterrupted one did.
        var levelWeights = cfg.LevelWeighting == "initial_kl"
            ? InitialKlWeights(model, projection, stream, trainEnd, len, cfg.RankLevels, lv => Enumerable.Repeat(Rank(lv), units).ToArray(),
                progress, cfg.Steps)
            : null;
        if (File.Exists(Path.Combine(folder, "trainer_state.json"))) seconds = Resume(folder, model, opt, log);

        var clock = Stopwatch.StartNew();
        long tokens = 0;
        float? lastValidation = null;
        if (opt.Step == 0)
        {
            // Where the initial (PCA) basis stands, as step 0 of the log.
            lastValidation = ValidationKl(model, projection, validation, half);
            log.Add(string.Create(CultureInfo.InvariantCulture, $"0,,,{lastValidation.Value:R},"));
        }
        for (int step = opt.Step; step < cfg.Steps; step++)
        {
            ct.ThrowIfCancellationRequested();
            var rng = new Random(unchecked((int)(((uint)cfg.Seed * 2654435761u) ^ ((uint)step * 40503u + 0x7F4A7C15u))));
            int[] Draw() => [.. Enumerable.Range(0, units).Select(_ => Rank(1 + rng.Next(cfg.RankLevels)))];
            int[] keyRanks, valueRanks;
            float stepWeight = 1;
            if (cfg.RankSampling == "uniform")
            {
                int lv = UniformLevel(cfg, rng);
                keyRanks = valueRanks = Enumerable.Repeat(Rank(lv), units).ToArray();
                if (levelWeights != null) stepWeight = levelWeights[lv - 1];
            }
            else (keyRanks, valueRanks) = (Draw(), Draw());
            var batch = Enumerable.Range(0, cfg.BatchSize).Select(_ =>
            {
                if (task != null && rng.NextDouble() < cfg.TaskFraction) return task(rng);
                int s = rng.Next(0, trainEnd - len);
                return stream[s..(s + len)];
            }).ToList();
            model.KvTransform = null;
            var teacher = new float[batch.Count][];
            Parallel.For(0, batch.Count, parallel, i => teacher[i] = model.Logits(batch[i].AsSpan(0, batch[i].Length - 1)));
            model.KvTransform = projection;
            projection.Prepare(keyRanks, valueRanks);
            model.ZeroGrad();
            var grads = new GradientSet[batch.Count];
            var losses = new (float Kl, float Ce)[batch.Count];
            Parallel.For(0, batch.Count, parallel, i =>
            {
                grads[i] = model.NewGradients();
                losses[i] = model.AccumulateKvDistillation(batch[i], teacher[i], cfg.KlWeight, cfg.CeWeight, stepWeight / batch.Count,
                    grads[i]);
            });
            foreach (var g in grads) { model.Grads.Add(g); g.Dispose(); } // in order: the sum is deterministic
            float loss = losses.Average(l => cfg.KlWeight * l.Kl + cfg.CeWeight * l.Ce);
            if (!float.IsFinite(loss))
                throw new InvalidDataException($"projection training diverged at step {step + 1}: the loss is {loss}");
            float lr = opt.LearningRate(step);
            opt.Update(model);
            tokens += batch.Sum(b => b.Length - 1);
            bool validated = (step + 1) % cfg.EvalEvery == 0 || step + 1 == cfg.Steps;
            if (validated) lastValidation = ValidationKl(model, projection, validation, half);
            log.Add(string.Create(CultureInfo.InvariantCulture, $"{step + 1},{loss:R},{losses.Average(l => l.Kl):R}," +
                $"{(validated ? lastValidation!.Value.ToString("R", CultureInfo.InvariantCulture) : "")},{lr:R}"));
            if ((step + 1) % cfg.CheckpointEvery == 0 || step + 1 == cfg.Steps)
                Checkpoint(folder, model, opt, cfg, log, seconds + clock.Elapsed.TotalSeconds, projection, full, outPath);
            progress?.Report(new TrainingProgress("training", step + 1, cfg.Steps, loss, lastValidation,
                tokens / clock.Elapsed.TotalSeconds, lr));
        }
        // The last step's checkpoint wrote the file; a run resumed after its last step has nothing new to write.
        var trained = projection.Export(full, full);
        if (!File.Exists(outPath)) KvProjectionFile.Save(trained, outPath);
        return trained;
    }

    /// <summary>The level a uniform-sampling step trains every head at: one of drawn_levels where the config lists them,
    /// else one of 1..rank_levels - 1 (full rank is exact whatever the basis, so it is never drawn).</summary>
    internal static int UniformLevel(ProjectionTrainingConfig cfg, Random rng) =>
        cfg.DrawnLevels is { } drawn ? drawn[rng.Next(drawn.Length)] : 1 + rng.Next(cfg.RankLevels - 1);

    /// <summary>initial_kl's weight of each level 1..levels-1: the geometric mean of the initial basis's KLs over that
    /// level's KL, measured at uniform ranks on four fixed windows of the training text.</summary>
    private static float[] InitialKlWeights(TrainableLlama model, TrainableKvProjection projection, int[] stream, int trainEnd,
        int len, int levels, Func<int, int[]> ranks, IProgress<TrainingProgress>? progress, int steps)
    {
        progress?.Report(new TrainingProgress("weighing rank levels", 0, steps, 0, null, 0, 0));
        var windows = Enumerable.Range(0, 4).Select(i => stream[(i * (trainEnd - len) / 4)..(i * (trainEnd - len) / 4 + len)]).ToList();
        var kl = Enumerable.Range(1, levels - 1)
            .Select(lv => Math.Max(1e-6, ValidationKl(model, projection, windows, ranks(lv)))).ToArray();
        double mean = Math.Exp(kl.Average(Math.Log));
        return [.. kl.Select(k => (float)(mean / k))];
    }

    /// <summary>Mean KL(full model || projected at the given uniform ranks) over the validation windows.</summary>
    private static float ValidationKl(TrainableLlama model, TrainableKvProjection projection, List<int[]> windows, int[] ranks)
    {
        projection.Prepare(ranks, ranks);
        float total = 0;
        foreach (var w in windows)
        {
            model.KvTransform = null;
            var teacher = model.Logits(w.AsSpan(0, w.Length - 1));
            model.KvTransform = projection;
            var student = model.Logits(w.AsSpan(0, w.Length - 1));
            total += ForwardBackward.KlDivergence(teacher, student, new float[student.Length], model.Config.VocabSize);
        }
        return total / windows.Count;
    }

    private static void Checkpoint(string folder, TrainableLlama model, AdamW opt, ProjectionTrainingConfig cfg, List<string> log,
        double seconds, TrainableKvProjection projection, int[] full, string outPath)
    {
        Directory.CreateDirectory(folder);
        var names = model.Parameters.Keys.Where(model.IsTrainable).Order(StringComparer.Ordinal).ToList();
        model.SyncToHost();
        SafetensorsWriter.Write(Path.Combine(folder, "parameters.safetensors"), names.Select(n =>
            (n, WeightTensor.FromF32(n, 1, model.Parameters[n].Length, model.Parameters[n]), new long[] { model.Parameters[n].Length })));
        var moments = opt.ExportState(model).Where(kv => model.IsTrainable(kv.Key)).SelectMany(kv => new[]
        {
            ("m." + kv.Key, WeightTensor.FromF32(kv.Key, 1, kv.Value.M.Length, kv.Value.M), new long[] { kv.Value.M.Length }),
            ("v." + kv.Key, WeightTensor.FromF32(kv.Key, 1, kv.Value.V.Length, kv.Value.V), new long[] { kv.Value.V.Length }),
        });
        SafetensorsWriter.Write(Path.Combine(folder, "optimizer.safetensors"), moments);
        File.WriteAllText(Path.Combine(folder, "trainer_state.json"), JsonSerializer.Serialize(new
        {
            step = opt.Step, seconds = Math.Round(seconds, 3), config = cfg,
        }));
        File.WriteAllLines(Path.Combine(folder, "training_log.csv"), log.Prepend("step,loss,kl,validation_kl_half_rank,learning_rate"));
        var rows = log.Select(l => l.Split(',')).ToList();
        static double N(string s) => double.Parse(s, CultureInfo.InvariantCulture);
        string lossName = string.Create(CultureInfo.InvariantCulture, $"loss ({cfg.KlWeight:0.##} KL + {cfg.CeWeight:0.##} CE)");
        SvgPlot.Write(Path.Combine(folder, "loss.svg"), "Projection training loss", "step", "nats",
            new Dictionary<string, IReadOnlyList<(double X, double Y)>>
            {
                [lossName] = rows.Where(f => f[1].Length > 0).Select(f => (N(f[0]), N(f[1]))).ToList(),
                ["validation KL at half the dims"] = rows.Where(f => f[3].Length > 0).Select(f => (N(f[0]), N(f[3]))).ToList(),
            });
        KvProjectionFile.Save(projection.Export(full, full), outPath, new Dictionary<string, string>
        {
            ["training"] = $"{opt.Step} steps of {cfg.BatchSize} x {cfg.SequenceLength} tokens from {Path.GetFileName(cfg.Corpus)}",
        });
    }

    private static double Resume(string folder, TrainableLlama model, AdamW opt, List<string> log)
    {
        var state = JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "trainer_state.json"))).RootElement;
        var parameters = SafetensorsFile.Open(Path.Combine(folder, "parameters.safetensors"));
        foreach (var name in model.Parameters.Keys.Where(model.IsTrainable))
            parameters.Read(name, null, 0, 1).F32!.CopyTo(model.Parameters[name], 0);
        model.SyncFromHost();
        var file = SafetensorsFile.Open(Path.Combine(folder, "optimizer.safetensors"));
        foreach (var name in model.Parameters.Keys.Where(model.IsTrainable))
            if (file.Entries.ContainsKey("m." + name))
                opt.ImportState(model, name, file.Read("m." + name, null, 0, 1).F32!, file.Read("v." + name, null, 0, 1).F32!);
        opt.Step = state.GetProperty("step").GetInt32();
        var logPath = Path.Combine(folder, "training_log.csv");
        if (File.Exists(logPath)) log.AddRange(File.ReadAllLines(logPath).Skip(1).Take(opt.Step + 1));
        return state.TryGetProperty("seconds", out var s) ? s.GetDouble() : 0;
    }
}
