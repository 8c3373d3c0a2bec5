using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using KvIlgpu.Compute;
using KvIlgpu.Evaluation;
using KvIlgpu.Models;
using KvIlgpu.Models.Loading;
using KvIlgpu.Models.Saving;
using KvIlgpu.Tokenization;

namespace KvIlgpu.Training;

/// <summary>Trains a model from a TrainingConfig into an HF folder: BPE tokenizer on the training text, Brown corpus
/// mixed with synthetic long-range tasks, AdamW. The data of step s comes from a generator seeded with (seed, s), and
/// micro-batch gradients are summed in a fixed order, so a run is deterministic and a resumed run continues exactly.
/// Checkpoints (model, optimizer moments, step) go to the output folder every checkpoint_every steps.</summary>
public static class Trainer
{
    /// <summary>The tokenizer's beginning- and end-of-sequence tokens.</summary>
    public const string Bos = "<|bos|>", Eos = "<|eos|>";

    /// <summary>Trains (or resumes) a model and its tokenizer into an HF folder, outDir.</summary>
    /// <param name="cfg">The training config (see <see cref="TrainingConfig"/>).</param>
    /// <param name="outDir">The output folder; a checkpoint in it is resumed exactly.</param>
    /// <param name="progress">Receives each stage and every step's loss, validation loss and speed.</param>
    /// <param name="device">Where the forward and backward passes run: <see cref="DeviceKind.Cpu"/> the managed SIMD
    /// trainer, <see cref="DeviceKind.Cuda"/> or <see cref="DeviceKind.IlgpuCpu"/> the ILGPU training kernels,
    /// <see cref="DeviceKind.Auto"/> CUDA when present.</param>
    /// <param name="ct">Stops the run (the last checkpoint stays).</param>
    public static void Run(TrainingConfig cfg, string outDir, IProgress<TrainingProgress>? progress = null,
        DeviceKind device = DeviceKind.Cpu,
        CancellationToken ct = default)
    {
        using var ops = TrainingBackends.Create(device);
        Train(cfg, outDir, progress, ops, ct);
    }

    /// <summary>Trains (or resumes) into outDir. ops picks where the forward and backward run: the managed SIMD CPU
    /// code when null, or ILGPU kernels (CUDA, CPU accelerator) through an <see cref="IlgpuTrainingOps"/>.</summary>
    internal static TrainableLlama Train(TrainingConfig cfg, string outDir, IProgress<TrainingProgress>? progress = null,
        ITrainingOps? ops = null,
        CancellationToken ct = default)
    {
        Directory.CreateDirectory(outDir);
        progress?.Report(new TrainingProgress("reading corpus", 0, cfg.LastStep, 0, null, 0, 0));
        var docs = BrownCorpus.Read(cfg.Corpus);
        if (cfg.ValidationDocuments >= docs.Count)
            throw new InvalidDataException($"validation_documents is {cfg.ValidationDocuments}, but {cfg.Corpus} has {docs.Count} " +
                "documents: " +
                "some must be left to train on");
        int nVal = cfg.ValidationDocuments;
        var train = docs.Take(docs.Count - nVal).Select(d => d.Text).ToList();
        var val = docs.Skip(docs.Count - nVal).Select(d => d.Text).ToList();

        var tokPath = Path.Combine(outDir, "tokenizer.json");
        if (!File.Exists(tokPath) && cfg.InitFrom is string init)
        {
            var initTok = Path.Combine(init, "tokenizer.json");
            if (!File.Exists(initTok)) throw new FileNotFoundException($"init_from: {initTok} not found", initTok);
            File.Copy(initTok, tokPath);
        }
        if (!File.Exists(tokPath))
        {
            progress?.Report(new TrainingProgress("training tokenizer", 0, cfg.LastStep, 0, null, 0, 0));
            ByteLevelBpeTrainer.Save(ByteLevelBpeTrainer.Train(train, cfg.Merges, [Bos, Eos]), tokPath);
        }
        var probe = new ByteLevelBpeTextTokenizer(tokPath);
        int vocab = probe.VocabularySize, bos = vocab - 2, eos = vocab - 1;
        var tok = new ByteLevelBpeTextTokenizer(tokPath, bos, eos);
        progress?.Report(new TrainingProgress("tokenizing", 0, cfg.LastStep, 0, null, 0, 0));
        var trainStream = Stream(tok, train, eos);
        var valStream = Stream(tok, val, eos);

        var config = new ModelConfig
        {
            Architecture = "llama", Dim = cfg.Dim, HiddenDim = cfg.HiddenDim, Layers = cfg.Layers, Heads = cfg.Heads, KvHeads = cfg.KvHeads,
            VocabSize = vocab, MaxSeqLen = cfg.Context, RopeTheta = cfg.RopeTheta, RopeLayout = RopeLayout.HalfSplit,
            TiedEmbeddings = cfg.TieEmbeddings, BosTokenId = bos, EosTokenIds = [eos],
        }.Validated("training config");
        var model = new TrainableLlama(config, cfg.Seed);
        if (ops != null) model.UseOps(ops);
        var opt = new AdamW(cfg.LearningRate, cfg.WeightDecay, clipNorm: cfg.Clip, warmupSteps: cfg.Warmup, totalSteps: cfg.Steps);
        var statePath = Path.Combine(outDir, "trainer_state.json");
        var log = new List<string>();
        var totals = new RunTotals(ops?.Name ?? "managed SIMD CPU");
        if (File.Exists(statePath)) totals = Resume(outDir, model, opt, log) with { Device = totals.Device };
        else if (cfg.InitFrom is string initFolder) InitFrom(initFolder, model);

        var clock = Stopwatch.StartNew();
        long tokens = 0;
        float? lastVal = null;
        int lastCheckpoint = opt.Step;
        for (int step = opt.Step; step < cfg.LastStep; step++)
        {
            ct.ThrowIfCancellationRequested();
            model.ZeroGrad();
            var rng = new Random(StepSeed(cfg.Seed, step)); // not HashCode.Combine: that is randomised per process
            int n = cfg.BatchSize * cfg.Accumulation;
            var batch = Enumerable.Range(0, n).Select(_ => Sample(rng, cfg, tok, trainStream, train, bos)).ToList();
            var losses = model.AccumulateBatch(batch, cfg.AnswerWeight, ct);
            if (losses.Any(l => !float.IsFinite(l)))
                throw new InvalidDataException($"training diverged at step {step + 1}: the loss is " +
                    $"{losses.First(l => !float.IsFinite(l))}; " +
                    (lastCheckpoint > 0 ? $"the checkpoint of step {lastCheckpoint} in {outDir} stays as it was" : "no model was written"));
            float lr = opt.LearningRate(step);
            opt.Update(model);
            tokens += batch.Sum(b => b.Ids.Length - 1);
            float loss = losses.Average();
            bool validated = (step + 1) % cfg.EvalEvery == 0 || step + 1 == cfg.LastStep;
            if (validated) lastVal = ValidationLoss(model, valStream, cfg.SequenceLength);
            string validation = lastVal is float v && validated ? v.ToString("R", CultureInfo.InvariantCulture) : "";
            double tokensPerSecond = tokens / clock.Elapsed.TotalSeconds;
            log.Add(string.Create(CultureInfo.InvariantCulture, $"{step + 1},{loss:R},{validation},{lr:R},{tokensPerSecond:F1}"));
            if ((step + 1) % cfg.CheckpointEvery == 0 || step + 1 == cfg.LastStep)
            {
                Checkpoint(outDir, model, opt, cfg, log, totals with
                {
                    Tokens = totals.Tokens + tokens,
                    Seconds = totals.Seconds
                    + clock.Elapsed.TotalSeconds
                });
                lastCheckpoint = step + 1;
            }
            progress?.Report(new TrainingProgress("training", step + 1, cfg.LastStep, loss, lastVal, tokens / clock.Elapsed.TotalSeconds,
                lr));
        }
        return model;
    }

    /// <summary>The data seed of one step: the same in every process, so runs and resumed runs repeat exactly.</summary>
    private static int StepSeed(int seed, int step) => unchecked((int)(((uint)seed * 2654435761u) ^ ((uint)step * 40503u + 0x9E3779B9u)));

    /// <summary>The documents' tokens, each followed by EOS, in document order (encoded in parallel).</summary>
    private static int[] Stream(ITextTokenizer tok, IEnumerable<string> docs, int eos) =>
        docs.AsParallel().AsOrdered().Select(d => tok.Encode(d)).AsSequential().SelectMany(ids => ids.Append(eos)).ToArray();

    /// <summary>A training sequence: a corpus window, or (task_fraction of the time) a synthetic long-range task of a
    /// length drawn log-uniformly from [task_min_length, sequence_length].</summary>
    internal static TrainingSequence Sample(Random rng, TrainingConfig cfg, ITextTokenizer tok, int[] stream, List<string> docs, int bos)
    {
        int len = cfg.SequenceLength + 1;
        if (rng.NextDouble() >= cfg.TaskFraction)
        {
            int start = rng.Next(0, stream.Length - len);
            return new(stream[start..(start + len)], 0);
        }
        // Log-uniform lengths: most tasks are short (cheap, many per step), a steady share reaches the full length.
        int min = cfg.TaskMinLength ?? cfg.SequenceLength;
        int target = (int)Math.Round(min * Math.Pow(cfg.SequenceLength / (double)min, rng.NextDouble())) + 1;
        int kind = Pick(rng, cfg.TaskWeights);
        var doc = docs[rng.Next(docs.Count)];
        int chars = Math.Min(doc.Length, target * 4);
        for (int attempt = 0; attempt < 4; attempt++)
        {
            int from = rng.Next(0, Math.Max(1, doc.Length - chars));
            var filler = doc.Substring(from, Math.Min(chars, doc.Length - from));
            float promptWeight = 1f;
            if (cfg.RepeatedFiller > 0 && kind < 2 && rng.NextDouble() < cfg.RepeatedFiller)
            {
                filler = SyntheticTasks.RepeatedSentences(filler, filler.Length, rng);
                promptWeight = cfg.RepeatedFillerPromptWeight;
            }
            var sample = kind switch
            {
                0 => SyntheticTasks.Passkey(filler, Math.Pow(rng.NextDouble(), cfg.NeedleDepthPower), rng),
                1 => SyntheticTasks.MultiKeyNeedle(filler, rng.Next(2, 6), rng, cfg.NeedleDepthPower),
                _ => SyntheticTasks.Copy(filler, rng.Next(5, 20), rng),
            };
            var ids = new List<int> { bos };
            ids.AddRange(tok.Encode(sample.Prompt));
            int promptTokens = ids.Count;
            ids.AddRange(tok.Encode(sample.Answer));
            if (ids.Count <= target) return new([.. ids], ids.Count - promptTokens, promptWeight);
            chars = (int)(chars * 0.8 * target / ids.Count);
        }
        int s = rng.Next(0, stream.Length - len);
        return new(stream[s..(s + len)], 0);
    }

    private static int Pick(Random rng, double[] weights)
    {
        double u = rng.NextDouble() * weights.Sum();
        for (int i = 0; i < weights.Length; i++) if ((u -= weights[i]) < 0) return i;
        return weights.Length - 1;
    }

    /// <summary>Starts from a trained model (continued training); its shape must match the config's.</summary>
    private static void InitFrom(string folder, TrainableLlama model)
    {
        var saved = new TrainableLlamaLoader(ModelLoader.Load(folder));
        foreach (var (name, values) in saved.Parameters)
        {
            if (!model.Parameters.TryGetValue(name, out var target) || target.Length != values.Length)
                throw new InvalidDataException($"init_from {folder}: tensor {name} does not match the config's model shape");
            values.CopyTo(target, 0);
        }
        model.SyncFromHost();
    }

    /// <summary>Mean next-token loss over fixed windows of the held-out documents.</summary>
    internal static float ValidationLoss(TrainableLlama model, int[] stream, int sequenceLength, int windows = 8)
    {
        int len = Math.Min(sequenceLength + 1, stream.Length);
        var losses = new float[windows];
        Parallel.For(0, windows, new ParallelOptions { MaxDegreeOfParallelism = model.Ops.ParallelMicroBatches ? -1 : 1 }, i =>
        {
            int start = (int)((long)(stream.Length - len) * i / Math.Max(1, windows - 1));
            var seq = stream.AsSpan(start, len);
            var logits = model.Logits(seq[..^1]);
            losses[i] = ForwardBackward.CrossEntropy(logits, seq[1..], new float[logits.Length], model.Config.VocabSize);
        });
        return losses.Average();
    }

    /// <summary>What a run has done so far, summed over resumes: training tokens, seconds in the training loop, and where
    /// the last part ran. Kept in trainer_state.json for the model card.</summary>
    private sealed record RunTotals(string Device, long Tokens = 0, double Seconds = 0);

    private static void Checkpoint(string outDir, TrainableLlama model, AdamW opt, TrainingConfig cfg, List<string> log, RunTotals totals)
    {
        HuggingFaceFolderWriter.Write(outDir, model.ToWeights(outDir));
        var moments = opt.ExportState(model).SelectMany(kv => new[]
        {
            ("m." + kv.Key, WeightTensor.FromF32(kv.Key, 1, kv.Value.M.Length, kv.Value.M), new long[] { kv.Value.M.Length }),
            ("v." + kv.Key, WeightTensor.FromF32(kv.Key, 1, kv.Value.V.Length, kv.Value.V), new long[] { kv.Value.V.Length }),
        });
        SafetensorsWriter.Write(Path.Combine(outDir, "optimizer.safetensors"), moments);
        File.WriteAllText(Path.Combine(outDir, "trainer_state.json"), JsonSerializer.Serialize(new
        {
            step = opt.Step, tokens = totals.Tokens, seconds = Math.Round(totals.Seconds, 3), device = totals.Device, config = cfg,
        }));
        File.WriteAllLines(Path.Combine(outDir, "training_log.csv"), log.Prepend("step,loss,validation_loss,learning_rate,tokens_per_s"));
        var points = log.Select(l => l.Split(',')).Select(f => (double.Parse(f[0], CultureInfo.InvariantCulture), double.Parse(f[1],
            CultureInfo.InvariantCulture))).ToList();
        var valPoints = log.Select(l => l.Split(',')).Where(f => f[2].Length > 0)
            .Select(f => (double.Parse(f[0], CultureInfo.InvariantCulture), double.Parse(f[2], CultureInfo.InvariantCulture))).ToList();
        SvgPlot.Write(Path.Combine(outDir, "loss.svg"), "Training loss", "step", "cross-entropy (nats)",
            new Dictionary<string, IReadOnlyList<(double X, double Y)>> { ["train"] = points, ["validation"] = valPoints });
    }

    private static RunTotals Resume(string outDir, TrainableLlama model, AdamW opt, List<string> log)
    {
        var state = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "trainer_state.json"))).RootElement;
        var saved = new TrainableLlamaLoader(ModelLoader.Load(outDir));
        foreach (var (name, values) in saved.Parameters) values.CopyTo(model.Parameters[name], 0);
        model.SyncFromHost();
        var file = SafetensorsFile.Open(Path.Combine(outDir, "optimizer.safetensors"));
        foreach (var name in model.Parameters.Keys)
            if (file.Entries.ContainsKey("m." + name))
                opt.ImportState(model, name, file.Read("m." + name, null, 0, 1).F32!, file.Read("v." + name, null, 0, 1).F32!);
        opt.Step = state.GetProperty("step").GetInt32();
        var logPath = Path.Combine(outDir, "training_log.csv");
        if (File.Exists(logPath)) log.AddRange(File.ReadAllLines(logPath).Skip(1).Take(opt.Step));
        return new RunTotals("",
            state.TryGetProperty("tokens", out var t) ? t.GetInt64() : 0,
            state.TryGetProperty("seconds", out var sec) ? sec.GetDouble() : 0);
    }
}
