using KvIlgpu.Models;
using KvIlgpu.Models.Loading;
using KvIlgpu.Projection;
using KvIlgpu.Tests.Support;
using KvIlgpu.Training;

namespace KvIlgpu.Tests.Projection;

[Collection("backends")] // shares ILGPU's CPU accelerator, which takes one caller at a time
public class ProjectionTrainingTests
{
    private static readonly ModelConfig Shape = TestModels.Config(dim: 32, hidden: 48, layers: 2, heads: 4, kvHeads: 2, vocab: 64, seq: 64)
        with
    { RopeLayout = RopeLayout.HalfSplit };

    [Fact]
    public void The_projection_gradients_match_finite_differences_of_the_distillation_loss()
    {
        var w = TestModels.Random(Shape, seed: 2);
        var model = TrainableLlama.FromWeights(w);
        var init = TestProjections.Random(Shape.Layers, Shape.KvHeads, Shape.HeadDim, seed: 3);
        var projection = new TrainableKvProjection(model, init);
        var rng = new Random(5);
        // Move the parameters away from zero so the Cayley map is not at its identity point.
        foreach (var name in model.Parameters.Keys.Where(model.IsTrainable))
        {
            var p = model.Parameters[name];
            for (int i = 0; i < p.Length; i++) p[i] += (float)(rng.NextDouble() - 0.5) * 0.2f;
        }
        model.SyncFromHost();
        int[] keyRanks = [3, 8, 5, 2], valueRanks = [6, 1, 8, 4];
        var tokens = Enumerable.Range(0, 13).Select(_ => rng.Next(Shape.VocabSize)).ToArray();
        model.KvTransform = null;
        var teacher = model.Logits(tokens.AsSpan(0, 12));
        model.KvTransform = projection;
        double Loss()
        {
            projection.Prepare(keyRanks, valueRanks);
            var g = model.NewGradients();
            var (kl, ce) = model.AccumulateKvDistillation(tokens, teacher, 0.25f, 0.75f, 1f, g);
            g.Dispose();
            return 0.25 * kl + 0.75 * ce;
        }
        projection.Prepare(keyRanks, valueRanks);
        model.ZeroGrad();
        model.AccumulateKvDistillation(tokens, teacher, 0.25f, 0.75f, 1f, model.Grads);
        foreach (var name in new[] { TrainableKvProjection.SkewName(KvPart.Key, 1), TrainableKvProjection.SkewName(KvPart.Value, 0),
            TrainableKvProjection.MeanName(KvPart.Key, 0), TrainableKvProjection.MeanName(KvPart.Value, 1) })
        {
            var grad = new float[model.Parameters[name].Length];
            model.Ops.ToHost(model.Grads[name], grad);
            var p = model.Parameters[name];
            // The entries with the largest gradients, where finite differences in float32 are meaningful.
            foreach (int i in Enumerable.Range(0, p.Length).OrderByDescending(i => Math.Abs(grad[i])).Take(3))
            {
                float saved = p[i];
                const float h = 2e-3f;
                p[i] = saved + h; model.SyncFromHost(); double plus = Loss();
                p[i] = saved - h; model.SyncFromHost(); double minus = Loss();
                p[i] = saved; model.SyncFromHost();
                double numeric = (plus - minus) / (2 * h);
                Assert.True(Math.Abs(numeric - grad[i]) <= 0.05 * Math.Abs(numeric) + 1e-4,
                    $"{name}[{i}]: numeric {numeric:G5}, analytic {grad[i]:G5}");
            }
        }
    }

    /// <summary>The paper's per-head rank sampling, and uniform levels weighted by the initial basis's KL.</summary>
    [Theory]
    [InlineData("per_head", "none")]
    [InlineData("uniform", "initial_kl")]
    public void A_short_run_lowers_the_kl_at_half_the_dims_and_keeps_every_basis_orthogonal(string sampling, string weighting)
    {
        using var dir = new TempDir();
        var w = TestModels.Random(Shape, seed: 4);
        TestModels.WriteHuggingFace(dir.Path, w, WeightType.F32);
        var rng = new Random(1);
        string corpus = dir.File("corpus.ids");
        File.WriteAllText(corpus, string.Join(",", Enumerable.Range(0, 4000).Select(_ => rng.Next(Shape.VocabSize))));
        var loaded = ModelLoader.Load(dir.Path);
        var options = new KvIlgpu.Engine.EngineOptions(KvIlgpu.Compute.DeviceKind.Cpu);
        using (var engine = KvIlgpu.Engine.InferenceEngine.FromWeights(loaded, options))
        {
            var windows = PcaCalibrator.Windows(KvIlgpu.Evaluation.EvaluationCorpus.LoadCalibration(corpus, null), 64, 1024);
            var pca = PcaCalibrator.Calibrate(engine, windows);
            KvProjectionFile.Save(pca, dir.File("pca.safetensors"));
        }
        var init = KvProjectionFile.Load(dir.File("pca.safetensors"));
        var cfg = new ProjectionTrainingConfig
        {
            Corpus = corpus, SequenceLength = 32, BatchSize = 4, Steps = 40, LearningRate = 0.01f, Warmup = 2, EvalEvery = 10,
            KlWeight = 1, CeWeight = 0, // random weights and tokens: the cross-entropy would only add noise
            CheckpointEvery = 15, RankSampling = sampling, LevelWeighting = weighting,
        };
        string output = dir.File("trained.safetensors");
        var trained = ProjectionTrainer.Run(cfg, dir.Path, init, output);

        foreach (var part in new[] { KvPart.Key, KvPart.Value })
            for (int l = 0; l < Shape.Layers; l++)
                for (int h = 0; h < Shape.KvHeads; h++)
                    Assert.True(KvProjection.OrthogonalityError(trained.Basis(part, l, h), Shape.HeadDim) < 1e-5);
        // KL(full || projected at half the dims) on fresh tokens, from the plain reference (not the trainer's own loss).
        var probe = Enumerable.Range(0, 40).Select(_ => rng.Next(Shape.VocabSize)).ToArray();
        double before = Kl(loaded, init.WithUniformRanks(0.5), probe), after = Kl(loaded, trained.WithUniformRanks(0.5), probe);
        if (sampling == "per_head") Assert.True(after < 0.8 * before, $"KL at half the dims: PCA {before:G4}, trained {after:G4}");
        else
        {
            // Its steps spread over seven levels, each weighted by the initial KL: every level gains on PCA.
            foreach (double f in new[] { 0.25, 0.5, 0.75 })
            {
                double pca = Kl(loaded, init.WithUniformRanks(f), probe), ours = Kl(loaded, trained.WithUniformRanks(f), probe);
                Assert.True(ours < 0.95 * pca, $"KL at {f} of the dims: PCA {pca:G4}, trained {ours:G4}");
            }
        }
        // The file holds what was returned, and the checkpoint folder a resumable state.
        var back = KvProjectionFile.Load(output);
        Assert.Equal(trained.Basis(KvPart.Key, 1, 1), back.Basis(KvPart.Key, 1, 1));
        Assert.True(File.Exists(Path.Combine(ProjectionTrainer.CheckpointFolder(output), "trainer_state.json")));
    }

    /// <summary>A run stopped after a checkpoint and resumed ends bitwise where an uninterrupted one does, with either
    /// sampling (the level weights are measured from the initial basis before a checkpoint is read back).</summary>
    [Theory]
    [InlineData("per_head", "none")]
    [InlineData("uniform", "initial_kl")]
    public void A_resumed_run_ends_where_an_uninterrupted_one_does(string sampling, string weighting)
    {
        using var dir = new TempDir();
        string corpus = WriteModelAndCorpus(dir, modelSeed: 8, corpusSeed: 3, tokens: 3000);
        var init = TestProjections.Random(Shape.Layers, Shape.KvHeads, Shape.HeadDim, seed: 1);
        var cfg = new ProjectionTrainingConfig
        {
            Corpus = corpus, SequenceLength = 16, BatchSize = 2, Steps = 6, CheckpointEvery = 3,
            EvalEvery = 3, RankSampling = sampling, LevelWeighting = weighting,
        };
        var whole = ProjectionTrainer.Run(cfg, dir.Path, init, dir.File("whole.safetensors"));
        Assert.Throws<OperationCanceledException>(() => ProjectionTrainer.Run(cfg, dir.Path, init, dir.File("parts.safetensors"),
            new SyncStop(3)));
        var resumed = ProjectionTrainer.Run(cfg, dir.Path, init, dir.File("parts.safetensors"));
        Assert.Equal(whole.Basis(KvPart.Value, 1, 0), resumed.Basis(KvPart.Value, 1, 0));
        Assert.Equal(whole.Mean(KvPart.Key, 0, 1), resumed.Mean(KvPart.Key, 0, 1));
    }

    /// <summary>A uniform-sampling step draws only the levels drawn_levels lists, each of them; without the key, every
    /// level from 1 to rank_levels - 1 and never full rank.</summary>
    [Fact]
    public void Uniform_steps_draw_only_the_listed_levels()
    {
        var rng = new Random(5);
        var listed = new ProjectionTrainingConfig { RankSampling = "uniform", RankLevels = 8, DrawnLevels = [2, 3, 6] };
        var drawn = Enumerable.Range(0, 600).Select(_ => ProjectionTrainer.UniformLevel(listed, rng)).ToHashSet();
        Assert.Equal([2, 3, 6], drawn.Order());
        var all = new ProjectionTrainingConfig { RankSampling = "uniform", RankLevels = 8 };
        drawn = Enumerable.Range(0, 600).Select(_ => ProjectionTrainer.UniformLevel(all, rng)).ToHashSet();
        Assert.Equal(Enumerable.Range(1, 7), drawn.Order());
    }

    [Theory]
    [InlineData("{\"rank_sampling\": \"shared\"}", "rank_sampling")]
    [InlineData("{\"level_weighting\": \"pca\"}", "level_weighting")]
    [InlineData("{\"level_weighting\": \"initial_kl\"}", "level_weighting initial_kl needs rank_sampling uniform")]
    [InlineData("{\"rank_sampling\": \"uniform\", \"rank_levels\": 1}", "rank_levels")]
    [InlineData("{\"drawn_levels\": [2]}", "drawn_levels needs rank_sampling uniform")]
    [InlineData("{\"rank_sampling\": \"uniform\", \"drawn_levels\": [0, 2]}", "drawn_levels must be distinct levels")]
    [InlineData("{\"rank_sampling\": \"uniform\", \"drawn_levels\": [8]}", "drawn_levels must be distinct levels")]
    [InlineData("{\"rank_sampling\": \"uniform\", \"drawn_levels\": [3, 3]}", "drawn_levels must be distinct levels")]
    [InlineData("{\"rank_sampling\": \"uniform\", \"drawn_levels\": []}", "drawn_levels must be distinct levels")]
    public void A_config_with_a_bad_sampling_key_is_rejected_naming_it(string json, string named)
    {
        using var dir = new TempDir();
        string path = dir.File("c.json");
        File.WriteAllText(path, json);
        var e = Assert.Throws<InvalidDataException>(() => ProjectionTrainingConfig.Load(path));
        Assert.Contains(named, e.Message, StringComparison.Ordinal);
        Assert.Contains(path, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_ilgpu_kernels_train_the_same_projection_as_the_managed_trainer()
    {
        using var dir = new TempDir();
        string corpus = WriteModelAndCorpus(dir, modelSeed: 9, corpusSeed: 7, tokens: 2000);
        var init = TestProjections.Random(Shape.Layers, Shape.KvHeads, Shape.HeadDim, seed: 2);
        var cfg = new ProjectionTrainingConfig
        {
            Corpus = corpus, SequenceLength = 16, BatchSize = 2, Steps = 3, EvalEvery = 3,
            CheckpointEvery = 3, LearningRate = 0.01f
        };
        var managed = ProjectionTrainer.Run(cfg, dir.Path, init, dir.File("managed.safetensors"));
        KvProjection onKernels;
        lock (Backends.Lock)
        {
            using var ops = new IlgpuTrainingOps((KvIlgpu.Compute.IlgpuBackend)Backends.Get("ilgpu-cpu"));
            onKernels = ProjectionTrainer.Train(cfg, dir.Path, init, dir.File("kernels.safetensors"), null, ops, default);
        }
        foreach (var part in new[] { KvPart.Key, KvPart.Value })
            for (int l = 0; l < Shape.Layers; l++)
                for (int h = 0; h < Shape.KvHeads; h++)
                {
                    var (a, b) = (managed.Basis(part, l, h), onKernels.Basis(part, l, h));
                    Assert.True(a.Zip(b).Max(x => Math.Abs(x.First - x.Second)) < 1e-3, $"{part} layer {l} head {h}");
                    Assert.NotEqual(init.Basis(part, l, h), b); // it did train
                }
    }

    /// <summary>A random model of the test shape as an HF folder in dir, and a .ids corpus of random tokens beside it;
    /// returns the corpus path.</summary>
    private static string WriteModelAndCorpus(TempDir dir, int modelSeed, int corpusSeed, int tokens)
    {
        TestModels.WriteHuggingFace(dir.Path, TestModels.Random(Shape, seed: modelSeed), WeightType.F32);
        var rng = new Random(corpusSeed);
        string corpus = dir.File("corpus.ids");
        File.WriteAllText(corpus, string.Join(",", Enumerable.Range(0, tokens).Select(_ => rng.Next(Shape.VocabSize))));
        return corpus;
    }

    /// <summary>Cancels the run after a given step has been reported (the checkpoint of that step is written first).</summary>
    private sealed class SyncStop(int step) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value)
        {
            if (value.Stage == "training" && value.Step >= step) throw new OperationCanceledException();
        }
    }

    /// <summary>Mean KL(no projection || projection p) over every position, from the engine's forward pass (whose projected
    /// attention ProjectedAttentionTests holds to the plain reference).</summary>
    private static double Kl(LlamaWeights w, KvProjection p, int[] tokens)
    {
        float[] Run(KvProjection? projection)
        {
            using var model = new LlamaModel(w, new KvIlgpu.Compute.ManagedSimdBackend()) { Projection = projection };
            using var cache = model.CreateCache();
            return model.Forward(cache, tokens, allLogits: true);
        }
        var (teacher, student) = (Run(null), Run(p));
        return ForwardBackward.KlDivergence(teacher, student, new float[student.Length], w.Config.VocabSize);
    }
}
