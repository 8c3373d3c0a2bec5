using KvIlgpu.Compute;
using KvIlgpu.Models;
using KvIlgpu.Models.Loading;
using KvIlgpu.Models.Saving;
using KvIlgpu.Tests.Support;
using KvIlgpu.Training;

namespace KvIlgpu.Tests.Training;

public class TrainerTests
{
    private static ModelConfig Tiny(int vocab = 24) => new ModelConfig
    {
        Dim = 16, HiddenDim = 32, Layers = 2, Heads = 4, KvHeads = 2, VocabSize = vocab, MaxSeqLen = 32, BosTokenId = 1, EosTokenIds = [2],
    }.Validated("tiny");

    private static float[] InferenceLogits(LlamaWeights w, int[] tokens)
    {
        using var model = new LlamaModel(w, new ManagedSimdBackend(1));
        using var cache = model.CreateCache();
        return model.Forward(cache, tokens, allLogits: true);
    }

    [Fact]
    public void Training_forward_equals_the_inference_engine()
    {
        var m = new TrainableLlama(Tiny(), seed: 1);
        int[] tokens = [1, 5, 9, 3, 17, 22, 4];
        Compare.Close(m.Logits(tokens), InferenceLogits(m.ToWeights(), tokens), 1e-4, "logits");
    }

    [Fact]
    public void Whole_model_gradients_match_finite_differences()
    {
        var m = new TrainableLlama(Tiny(), seed: 2);
        int[] seq = [1, 5, 9, 3, 17, 22, 4, 8];
        m.ZeroGrad();
        m.AccumulateGradients(seq);
        var rng = new Random(3);
        foreach (var name in new[] { "model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
            "model.layers.0.self_attn.k_proj.weight",
                     "model.layers.1.self_attn.v_proj.weight", "model.layers.0.mlp.gate_proj.weight", "model.layers.1.mlp.down_proj.weight",
                     "model.layers.0.input_layernorm.weight", "model.norm.weight", "lm_head.weight" })
        {
            var p = m.Parameters[name];
            var g = m.Grads.ToHost(name);
            // Probe the coordinates with the largest gradients (others can be exactly 0, e.g. unused embedding rows).
            foreach (int i in Enumerable.Range(0, p.Length).OrderByDescending(i => Math.Abs(g[i])).Take(4))
            {
                float keep = p[i], eps = 1e-2f;
                p[i] = keep + eps; double up = Loss(m, seq);
                p[i] = keep - eps; double down = Loss(m, seq);
                p[i] = keep;
                double numeric = (up - down) / (2 * eps);
                Assert.True(Math.Abs(numeric - g[i]) <= 3e-2 * Math.Max(1e-2, Math.Abs(numeric)) + 2e-4,
                    $"{name}[{i}]: analytic {g[i]:G5}, numeric {numeric:G5}");
            }
        }
    }

    private static double Loss(TrainableLlama m, int[] seq)
    {
        var logits = m.Logits(seq.AsSpan(0, seq.Length - 1));
        return ForwardBackward.CrossEntropy(logits, seq.AsSpan(1), new float[logits.Length], m.Config.VocabSize);
    }

    [Fact]
    public void A_tiny_model_learns_a_pattern_and_round_trips_through_an_hf_folder()
    {
        var m = new TrainableLlama(Tiny(), seed: 4);
        var opt = new AdamW(1e-2f, weightDecay: 0.01f, warmupSteps: 5, totalSteps: 150);
        // A repeating pattern: predictable after one period.
        int[] seq = Enumerable.Range(0, 25).Select(i => 3 + i % 7 * 2).ToArray();
        float first = 0, last = 0;
        for (int step = 0; step < 150; step++)
        {
            m.ZeroGrad();
            float loss = m.AccumulateGradients(seq);
            opt.Update(m);
            if (step == 0) first = loss;
            last = loss;
        }
        Assert.True(last < first * 0.3, $"loss {first:F3} -> {last:F3}");

        using var dir = new TempDir();
        HuggingFaceFolderWriter.Write(dir.Path, m.ToWeights());
        var loaded = ModelLoader.Load(dir.Path);
        Compare.Close(InferenceLogits(loaded, seq), m.Logits(seq), 1e-5, "saved and loaded logits");
    }

    [Fact]
    public void Frozen_parameters_get_no_gradient_and_do_not_move()
    {
        var m = new TrainableLlama(Tiny(), seed: 5) { IsTrainable = n => n.Contains("self_attn.k_proj") };
        var before = m.Parameters.ToDictionary(kv => kv.Key, kv => (float[])kv.Value.Clone());
        m.ZeroGrad();
        m.AccumulateGradients([1, 5, 9, 3, 17, 22]);
        new AdamW(1e-2f).Update(m);
        foreach (var (name, value) in m.Parameters)
        {
            bool moved = !value.SequenceEqual(before[name]);
            Assert.Equal(name.Contains("self_attn.k_proj"), moved);
        }
    }

    [Fact]
    public void Cosine_schedule_warms_up_then_decays_to_its_floor()
    {
        var opt = new AdamW(1f, warmupSteps: 10, totalSteps: 110, minLearningRateFraction: 0.1f);
        Assert.Equal(0.1f, opt.LearningRate(0), 5);
        Assert.Equal(1f, opt.LearningRate(9), 5);
        Assert.Equal(0.55f, opt.LearningRate(60), 3);
        Assert.Equal(0.1f, opt.LearningRate(110), 5);
    }
}
