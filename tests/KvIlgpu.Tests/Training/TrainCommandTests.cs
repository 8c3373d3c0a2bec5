using System.Formats.Tar;
using System.IO.Compression;
using System.Text;
using System.Text.Json;
using KvIlgpu.Tests.Support;
using KvIlgpu.Training;

namespace KvIlgpu.Tests.Training;

public class TrainCommandTests
{
    /// <summary>A small corpus in the Brown package's format: package/cXNN files of tab-indented tagged sentences.</summary>
    internal static string WriteTinyBrown(TempDir dir)
    {
        var path = dir.File("brown.tgz");
        using var gz = new GZipStream(File.Create(path), CompressionLevel.Fastest);
        using var tar = new TarWriter(gz);
        var rng = new Random(1);
        string[] words = ["the/at", "cat/nn", "sat/vbd", "on/in", "a/at", "mat/nn", "dog/nn", "ran/vbd", "home/nr", "quickly/rb",
            "and/cc", "then/rb"];
        for (int f = 0; f < 12; f++)
        {
            var sb = new StringBuilder();
            for (int s = 0; s < 40; s++)
                sb.Append("\n\n\t").Append(string.Join(" ", Enumerable.Range(0, rng.Next(5, 12)).Select(_ =>
                    words[rng.Next(words.Length)]))).Append(" ./.\n");
            var entry = new PaxTarEntry(TarEntryType.RegularFile, $"package/c{(char)('a' + f % 3)}{f:D2}")
            {
                DataStream = new MemoryStream(Encoding.UTF8.GetBytes(sb.ToString()))
            };
            tar.WriteEntry(entry);
        }
        return path;
    }

    private static string WriteConfig(TempDir dir, string corpus, int steps, Dictionary<string, object>? extra = null,
        string name = "train")
    {
        var values = new Dictionary<string, object>
        {
            ["seed"] = 3, ["corpus"] = corpus, ["merges"] = 30, ["dim"] = 16, ["hidden_dim"] = 32, ["layers"] = 1, ["heads"] = 4,
            ["kv_heads"] = 2, ["context"] = 64, ["sequence_length"] = 24, ["batch_size"] = 2, ["accumulation"] = 2, ["steps"] = steps,
            ["learning_rate"] = 0.01, ["warmup"] = 2, ["task_fraction"] = 0.3, ["validation_documents"] = 2, ["eval_every"] = 3,
            ["checkpoint_every"] = 3,
        };
        foreach (var (k, v) in extra ?? []) values[k] = v;
        return WriteFile(dir.File($"{name}-{steps}.json"), JsonSerializer.Serialize(values));
    }

    [Fact]
    public void Continued_training_on_the_ilgpu_kernels_matches_the_managed_backend()
    {
        using var dir = new TempDir();
        var corpus = WriteTinyBrown(dir);
        Trainer.Train(TrainingConfig.Load(WriteConfig(dir, corpus, 3)), dir.File("base"));
        var extra = new Dictionary<string, object>
        {
            ["init_from"] = dir.File("base"), ["task_fraction"] = 0.8, ["task_min_length"] = 16, ["task_weights"] = new[] { 2.0, 1.0,
                0.0 }, ["answer_weight"] = 5.0,
        };
        var path = WriteConfig(dir, corpus, 4, extra, "continued");
        var managed = Trainer.Train(TrainingConfig.Load(path), dir.File("managed"));
        var (code, _, stderr) = CliRunner.Run("train", "--config", path, "--out", dir.File("ilgpu"), "--device", "ilgpu-cpu");
        Assert.True(code == 0, stderr);
        // Another process, another backend: the same data (the step seeds do not depend on the process) and the same
        // losses up to float rounding.
        var losses = (string folder) => File.ReadAllLines(Path.Combine(dir.File(folder), "training_log.csv")).Skip(1)
            .Select(l => double.Parse(l.Split(',')[1], System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        Assert.Equal(losses("managed"), losses("ilgpu"), (a, b) => Math.Abs(a - b) < 1e-4);
        var trained = KvIlgpu.Models.Loading.ModelLoader.Load(dir.File("ilgpu"));
        var reference = managed.ToWeights();
        Compare.Close(trained.Layers[0].Wq.ToFloat(), reference.Layers[0].Wq.ToFloat(), 1e-3, "q_proj after training on ILGPU");
        Compare.Close(trained.TokenEmbedding.ToFloat(), reference.TokenEmbedding.ToFloat(), 1e-3, "embeddings after training on ILGPU");
        var baseWeights = KvIlgpu.Models.Loading.ModelLoader.Load(dir.File("base"));
        Assert.NotEqual(baseWeights.Layers[0].Wq.ToFloat(), trained.Layers[0].Wq.ToFloat()); // it did train, from the base
        Assert.Equal(File.ReadAllText(Path.Combine(dir.File("base"), "tokenizer.json")), File.ReadAllText(Path.Combine(dir.File("ilgpu"),
            "tokenizer.json")));
    }

    private static string WriteFile(string path, string text) { File.WriteAllText(path, text); return path; }

    [Fact]
    public void Train_writes_a_loadable_model_and_a_resumed_run_ends_exactly_where_an_uninterrupted_one_does()
    {
        using var dir = new TempDir();
        var corpus = WriteTinyBrown(dir);
        var cfg = TrainingConfig.Load(WriteConfig(dir, corpus, 6));

        var whole = Trainer.Train(cfg, dir.File("whole"));
        using var cts = new CancellationTokenSource();
        Assert.ThrowsAny<OperationCanceledException>(() =>
            Trainer.Train(cfg, dir.File("resumed"), new Progress(p => { if (p.Step == 3) cts.Cancel(); }), ct: cts.Token));
        var resumed = Trainer.Train(cfg, dir.File("resumed"));
        foreach (var (name, values) in whole.Parameters) Assert.Equal(values, resumed.Parameters[name]);

        foreach (var f in new[] { "config.json", "model.safetensors", "tokenizer.json", "training_log.csv", "loss.svg",
            "optimizer.safetensors" })
            Assert.True(File.Exists(Path.Combine(dir.File("whole"), f)), f);
        Assert.Equal(7, File.ReadAllLines(Path.Combine(dir.File("resumed"), "training_log.csv")).Length);

        // The CLI generates from the folder, with the trained tokenizer.
        var (code, stdout, stderr) = CliRunner.Run("generate", "--model", dir.File("whole"), "--prompt", "the cat", "--max-tokens", "5",
            "--json");
        Assert.True(code == 0, stderr);
        Assert.True(JsonDocument.Parse(stdout).RootElement.TryGetProperty("text", out _));
    }

    [Fact]
    public void A_run_stopped_early_by_stop_after_continues_into_the_same_schedule_and_keeps_its_totals()
    {
        using var dir = new TempDir();
        var corpus = WriteTinyBrown(dir);
        var whole = Trainer.Train(TrainingConfig.Load(WriteConfig(dir, corpus, 6)), dir.File("whole"));
        var stopped = TrainingConfig.Load(WriteConfig(dir, corpus, 6, new() { ["stop_after"] = 3 }, "stopped"));
        Trainer.Train(stopped, dir.File("run"));
        Assert.Equal(4, File.ReadAllLines(Path.Combine(dir.File("run"), "training_log.csv")).Length); // header + 3 steps
        var state = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir.File("run"), "trainer_state.json"))).RootElement;
        long tokensAt3 = state.GetProperty("tokens").GetInt64();
        Assert.True(tokensAt3 > 0 && state.GetProperty("seconds").GetDouble() >= 0);
        Assert.Equal("managed SIMD CPU", state.GetProperty("device").GetString());

        var continued = Trainer.Train(TrainingConfig.Load(WriteConfig(dir, corpus, 6)), dir.File("run"));
        foreach (var (name, values) in whole.Parameters) Assert.Equal(values, continued.Parameters[name]);
        state = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir.File("run"), "trainer_state.json"))).RootElement;
        Assert.True(state.GetProperty("tokens").GetInt64() > tokensAt3); // summed over the two parts
    }

    [Fact]
    public void Train_command_reports_a_bad_config_by_name()
    {
        using var dir = new TempDir();
        var path = WriteFile(dir.File("bad.json"), "{\"dim\": 16, \"heads\": 3, \"colour\": 1}");
        var (code, _, stderr) = CliRunner.Run("train", "--config", path, "--out", dir.File("out"));
        Assert.NotEqual(0, code);
        Assert.Contains("bad.json", stderr);
    }

    private sealed class Progress(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }

    /// <summary>Every config key is range-checked when the config loads, before the corpus is read or anything is
    /// allocated: the error names the file and the key. A shape far beyond the machine's memory is refused by its estimate.</summary>
    [Theory]
    [InlineData("eval_every", 0, "eval_every must be positive")]
    [InlineData("checkpoint_every", -3, "checkpoint_every must be positive")]
    [InlineData("rope_theta", -1.0, "rope_theta must be positive")]
    [InlineData("weight_decay", -0.1, "weight_decay must be >= 0")]
    [InlineData("clip", -1.0, "clip must be >= 0")]
    [InlineData("warmup", -5, "warmup must be >= 0")]
    [InlineData("validation_documents", 0, "validation_documents must be at least 1")]
    [InlineData("context", 1 << 20, "context must be at most 131072")]
    [InlineData("dim", 1 << 20, "the model and its training state need about")]
    public void A_config_key_out_of_range_is_refused_by_name(string key, object value, string expected)
    {
        using var dir = new TempDir();
        var path = WriteConfig(dir, dir.File("no-corpus-needed.tgz"), 3, new Dictionary<string, object> { [key] = value });
        var e = Assert.Throws<InvalidDataException>(() => TrainingConfig.Load(path));
        Assert.StartsWith(path + ": ", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Validation_documents_must_leave_documents_to_train_on()
    {
        using var dir = new TempDir();
        var corpus = WriteTinyBrown(dir); // 12 documents
        var cfg = TrainingConfig.Load(WriteConfig(dir, corpus, 3, new Dictionary<string, object> { ["validation_documents"] = 12 }));
        var e = Assert.Throws<InvalidDataException>(() => Trainer.Train(cfg, dir.File("out")));
        Assert.Contains("validation_documents is 12, but", e.Message);
        Assert.Contains("has 12 documents", e.Message);
    }

    /// <summary>A loss that turns NaN stops the run with the step it happened at, and no model is written after it.</summary>
    [Fact]
    public void A_diverging_run_stops_at_the_step_its_loss_turns_nan_and_writes_no_model()
    {
        using var dir = new TempDir();
        var corpus = WriteTinyBrown(dir);
        var cfg = TrainingConfig.Load(WriteConfig(dir, corpus, 6, new Dictionary<string, object>
        {
            ["learning_rate"] = 1e38, ["warmup"] = 0, ["clip"] = 0.0, ["checkpoint_every"] = 100,
        }));
        var e = Assert.Throws<InvalidDataException>(() => Trainer.Train(cfg, dir.File("out")));
        Assert.Matches(@"^training diverged at step [2-6]: the loss is (NaN|∞|-∞|Infinity|-Infinity); no model was written$",
            e.Message);
        Assert.False(File.Exists(Path.Combine(dir.File("out"), "model.safetensors")));
    }

    /// <summary>The shipped models' recipes still pass every check (their corpus path is ../shared's, so the files load
    /// wherever the checkout is): the default model's stages (64-wide heads) and those of the 16-wide-head model before it,
    /// and both models' projection training.</summary>
    [Fact]
    public void Every_stage_config_of_the_shipped_models_loads()
    {
        var root = new DirectoryInfo(AppContext.BaseDirectory);
        while (!File.Exists(Path.Combine(root.FullName, "KvIlgpu.sln"))) root = root.Parent!;
        var configs = Directory.GetFiles(Path.Combine(root.FullName, "weights", "default-train"), "stage*.json");
        Assert.Equal(5, configs.Length); // stages 1, 1b, 2, 3 and 4
        foreach (var path in configs)
        {
            var stage = TrainingConfig.Load(path);
            Assert.Equal(64, stage.Dim / stage.Heads);
        }
        var narrow = Directory.GetFiles(Path.Combine(root.FullName, "weights", "head16-train"), "stage*.json");
        Assert.Equal(16, narrow.Length); // stages 1-10 and 14-19
        foreach (var path in narrow)
        {
            var stage = TrainingConfig.Load(path);
            Assert.Equal(16, stage.Dim / stage.Heads);
        }
        foreach (var folder in new[] { "default-train", "head16-train" })
            KvIlgpu.Projection.ProjectionTrainingConfig.Load(Path.Combine(root.FullName, "weights", folder, "kv-projection.json"));
        var allKl = KvIlgpu.Projection.ProjectionTrainingConfig.Load(Path.Combine(root.FullName, "weights", "default-train",
            "kv-projection-kl.json"));
        Assert.Equal((1f, 0f), (allKl.KlWeight, allKl.CeWeight));
        var uniform = KvIlgpu.Projection.ProjectionTrainingConfig.Load(Path.Combine(root.FullName, "weights", "default-train",
            "kv-projection-uniform.json"));
        Assert.Equal(("uniform", "initial_kl"), (uniform.RankSampling, uniform.LevelWeighting));
        var second = KvIlgpu.Projection.ProjectionTrainingConfig.Load(Path.Combine(root.FullName, "weights", "default-train",
            "kv-projection-uniform-2.json"));
        Assert.Equal(("uniform", "initial_kl"), (second.RankSampling, second.LevelWeighting));
    }
}
