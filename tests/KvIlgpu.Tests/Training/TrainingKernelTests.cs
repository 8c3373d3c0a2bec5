using System.Collections.Concurrent;
using KvIlgpu.Compute;
using KvIlgpu.Kernels;
using KvIlgpu.Models;
using KvIlgpu.Tests.Support;
using KvIlgpu.Training;
using static KvIlgpu.Tests.Training.GradientCheckTests;

namespace KvIlgpu.Tests.Training;

/// <summary>The training ops of every backend (the ILGPU kernels on the CPU accelerator in both launch shapes, and the
/// managed SIMD code) against central finite differences of their own forward ops, AdamW against its formula, and a
/// whole model's gradients and updates on the ILGPU kernels against the managed backend.</summary>
[Collection("backends")]
public class TrainingKernelTests
{
    public static TheoryData<string> AllOps => Backends.AllShapes;
    private static readonly ConcurrentDictionary<string, ITrainingOps> Cache = new();

    private static ITrainingOps Ops(string name) => name == "cpu" ? ManagedTrainingOps.Instance
        : Cache.GetOrAdd(name, n => new IlgpuTrainingOps((IlgpuBackend)Backends.Get(n)));

    /// <summary>A device copy of a host array (a copy on the managed backend too, so tests own their inputs).</summary>
    private static TrainingTensor Up(ITrainingOps o, float[] x) => o.Wrap((float[])x.Clone());

    private static float[] Down(ITrainingOps o, TrainingTensor t)
    {
        var h = new float[t.Length];
        o.ToHost(t, h);
        return h;
    }

    [Theory, MemberData(nameof(AllOps))]
    public void MatMul(string backend)
    {
        lock (Backends.Lock)
        {
            var o = Ops(backend);
            var rng = new Random(1);
            int m = 3, k = 7, n = 5;
            var x = R(rng, m * k); var w = R(rng, n * k); var c = R(rng, m * n);
            double L()
            {
                using var X = Up(o, x); using var W = Up(o, w); using var Y = o.Allocate(m * n);
                o.MatMul(X, W, Y, m, k, n);
                return Dot(Down(o, Y), c);
            }
            using var X = Up(o, x); using var W = Up(o, w); using var C = Up(o, c);
            using var dX = o.Allocate(m * k); using var dW = o.Allocate(n * k);
            o.MatMulBackward(X, W, C, dX, dW, m, k, n);
            Check("dx", x, Down(o, dX), L, rng); Check("dw", w, Down(o, dW), L, rng);
        }
    }

    private static float[] Scale(float[] x, float s) => x.Select(v => v * s).ToArray();

    [Theory, MemberData(nameof(AllOps))]
    public void Backward_ops_accumulate_into_their_outputs(string backend)
    {
        lock (Backends.Lock)
        {
            var o = Ops(backend);
            var rng = new Random(11);
            int m = 2, k = 3, n = 4;
            using var X = Up(o, R(rng, m * k)); using var W = Up(o, R(rng, n * k)); using var C = Up(o, R(rng, m * n));
            using var dX = o.Allocate(m * k);
            o.MatMulBackward(X, W, C, dX, null, m, k, n);
            var once = Down(o, dX);
            o.MatMulBackward(X, W, C, dX, null, m, k, n);
            Compare.Close(Down(o, dX), Scale(once, 2), 1e-6, "dx after two backward passes");
        }
    }

    [Theory, MemberData(nameof(AllOps))]
    public void RmsNorm(string backend)
    {
        lock (Backends.Lock)
        {
            var o = Ops(backend);
            var rng = new Random(2);
            int rows = 3, d = 9;
            var x = R(rng, rows * d, 2); var w = R(rng, d); var c = R(rng, rows * d);
            double L()
            {
                using var X = Up(o, x); using var Wt = Up(o, w); using var Y = o.Allocate(rows * d);
                o.RmsNorm(X, Wt, Y, rows, 1e-5f);
                return Dot(Down(o, Y), c);
            }
            using var X = Up(o, x); using var Wt = Up(o, w); using var C = Up(o, c);
            using var dX = o.Allocate(rows * d); using var dW = o.Allocate(d);
            o.RmsNormBackward(X, Wt, C, dX, dW, rows, 1e-5f);
            Check("dx", x, Down(o, dX), L, rng, eps: 1e-3f); Check("dw", w, Down(o, dW), L, rng, eps: 1e-3f);
        }
    }

    [Theory, MemberData(nameof(AllOps))]
    public void Rope_backward_is_the_transposed_rotation(string backend)
    {
        lock (Backends.Lock)
        {
            var o = Ops(backend);
            var config = new ModelConfig
            {
                Dim = 16, HiddenDim = 8, Layers = 1, Heads = 2, KvHeads = 1, VocabSize = 4, MaxSeqLen = 32
            }.Validated("test");
            var table = new RopeTable(config);
            foreach (var layout in new[] { RopeLayout.HalfSplit, RopeLayout.InterleavedPairs })
            {
                var rng = new Random(3);
                int rows = 5, heads = 2, d = config.HeadDim;
                var x = R(rng, rows * heads * d); var c = R(rng, x.Length);
                double L() { using var X = Up(o, x); o.Rope(X, rows, heads, d, table, layout, 1); return Dot(Down(o, X), c); }
                using var dX = Up(o, c);
                o.Rope(dX, rows, heads, d, table, layout, -1);
                Check($"dx ({layout})", x, Down(o, dX), L, rng, eps: 1e-3f);
            }
        }
    }

    [Theory, MemberData(nameof(AllOps))]
    public void SwiGlu(string backend)
    {
        lock (Backends.Lock)
        {
            var o = Ops(backend);
            var rng = new Random(4);
            int n = 13;
            var g = R(rng, n, 3); var u = R(rng, n); var c = R(rng, n);
            double L()
            {
                using var Gt = Up(o, g); using var U = Up(o, u); using var Y = o.Allocate(n);
                o.SwiGlu(Gt, U, Y);
                return Dot(Down(o, Y), c);
            }
            using var Gt = Up(o, g); using var U = Up(o, u); using var C = Up(o, c);
            using var dG = o.Allocate(n); using var dU = o.Allocate(n);
            o.SwiGluBackward(Gt, U, C, dG, dU);
            Check("dg", g, Down(o, dG), L, rng, eps: 1e-3f); Check("du", u, Down(o, dU), L, rng, eps: 1e-3f);
        }
    }

    [Theory, MemberData(nameof(AllOps))]
    public void Causal_gqa_attention(string backend)
    {
        lock (Backends.Lock)
        {
            var o = Ops(backend);
            foreach (var (heads, kvHeads) in new[] { (4, 2), (3, 3), (4, 1) })
            {
                var rng = new Random(heads * 10 + kvHeads);
                int t = 6, d = 4;
                var q = R(rng, t * heads * d); var k = R(rng, t * kvHeads * d); var v = R(rng, t * kvHeads * d); var c = R(rng,
                    t * heads * d);
                double L()
                {
                    using var Q = Up(o, q); using var K = Up(o, k); using var V = Up(o, v);
                    using var O = o.Allocate(t * heads * d); using var P = o.Allocate(heads * t * t);
                    o.Attention(Q, K, V, O, P, t, heads, kvHeads, d);
                    return Dot(Down(o, O), c);
                }
                using var Q = Up(o, q); using var K = Up(o, k); using var V = Up(o, v); using var C = Up(o, c);
                using var O = o.Allocate(t * heads * d); using var P = o.Allocate(heads * t * t);
                o.Attention(Q, K, V, O, P, t, heads, kvHeads, d);
                using var dQ = o.Allocate(q.Length); using var dK = o.Allocate(k.Length); using var dV = o.Allocate(v.Length);
                o.AttentionBackward(Q, K, V, P, C, dQ, dK, dV, t, heads, kvHeads, d);
                string what = $"{heads}/{kvHeads} heads";
                Check("dq " + what, q, Down(o, dQ), L, rng, eps: 1e-3f);
                Check("dk " + what, k, Down(o, dK), L, rng, eps: 1e-3f);
                Check("dv " + what, v, Down(o, dV), L, rng, eps: 1e-3f);
            }
        }
    }

    [Theory, MemberData(nameof(AllOps))]
    public void Embedding_cross_entropy_and_kl(string backend)
    {
        lock (Backends.Lock)
        {
            var o = Ops(backend);
            var rng = new Random(6);
            int vocab = 7, dim = 3, rows = 4;
            int[] tokens = [1, 5, 1, 6];
            var table = R(rng, vocab * dim); var c = R(rng, rows * dim);
            double Le()
            {
                using var T = Up(o, table); using var Y = o.Allocate(rows * dim);
                o.Embed(tokens, T, Y, dim);
                return Dot(Down(o, Y), c);
            }
            using (var C = Up(o, c))
            using (var dT = o.Allocate(table.Length))
            {
                o.EmbeddingBackward(tokens, C, dT, dim);
                Check("dTable", table, Down(o, dT), Le, rng, eps: 1e-3f);
            }

            // Weighted cross-entropy: the loss differentiated is sum_r scale_r CE_r.
            var logits = R(rng, rows * vocab, 3);
            int[] targets = [0, 3, 6, 2];
            float[] scale = [0.1f, 0.5f, 0.25f, 2f];
            double Lce() => Enumerable.Range(0, rows).Sum(r => scale[r] * RowLoss(logits, targets, r, vocab));
            using (var Z = Up(o, logits))
            using (var dZ = o.Allocate(logits.Length))
            {
                float mean = o.CrossEntropy(Z, targets, scale, dZ, vocab);
                Assert.Equal(Enumerable.Range(0, rows).Average(r => RowLoss(logits, targets, r, vocab)), mean, 4);
                Check("dLogits (weighted cross-entropy)", logits, Down(o, dZ), Lce, rng, eps: 1e-3f);
            }

            var teacher = R(rng, rows * vocab, 3);
            double Lkl()
            {
                using var Tt = Up(o, teacher); using var S = Up(o,
                    logits); using var dS = o.Allocate(logits.Length); return o.KlDivergence(Tt, S, dS, vocab);
            }
            using (var Tt = Up(o, teacher))
            using (var S = Up(o, logits))
            using (var dS = o.Allocate(logits.Length))
            {
                float kl = o.KlDivergence(Tt, S, dS, vocab);
                Assert.True(kl > 0);
                Assert.Equal(G_Kl(teacher, logits, vocab), kl, 4);
                Check("dStudent (KL)", logits, Down(o, dS), Lkl, rng, eps: 1e-3f);
            }
        }
    }

    /// <summary>-log softmax(logits[r])[target], in double.</summary>
    private static double RowLoss(float[] logits, int[] targets, int r, int vocab)
    {
        var row = logits.Skip(r * vocab).Take(vocab).Select(v => (double)v).ToArray();
        double max = row.Max(), logZ = max + Math.Log(row.Sum(v => Math.Exp(v - max)));
        return logZ - row[targets[r]];
    }

    /// <summary>Mean KL(softmax(teacher) || softmax(student)) over rows, in double.</summary>
    private static double G_Kl(float[] teacher, float[] student, int vocab)
    {
        int rows = teacher.Length / vocab;
        double total = 0;
        for (int r = 0; r < rows; r++)
        {
            double[] Log(float[] z)
            {
                var row = z.Skip(r * vocab).Take(vocab).Select(v => (double)v).ToArray(); double m = row.Max(), lz = m
                    + Math.Log(row.Sum(v => Math.Exp(v - m))); return row.Select(v => v - lz).ToArray();
            }
            var lt = Log(teacher); var ls = Log(student);
            for (int i = 0; i < vocab; i++) total += Math.Exp(lt[i]) * (lt[i] - ls[i]);
        }
        return total / rows;
    }

    [Theory, MemberData(nameof(AllOps))]
    public void AdamW_step_and_gradient_norm_match_their_formulas(string backend)
    {
        lock (Backends.Lock)
        {
            var o = Ops(backend);
            var rng = new Random(8);
            int n = 1000;
            var p = R(rng, n); var g = R(rng, n); var m = R(rng, n, 0.1f); var v = R(rng, n).Select(Math.Abs).ToArray();
            var s = new AdamWStep
            {
                LearningRate = 0.01f, Beta1 = 0.9f, Beta2 = 0.95f, Epsilon = 1e-8f, C1 = 0.19f, C2 = 0.0975f,
                GradScale = 0.5f, Decay = 0.1f
            };
            using var P = Up(o, p); using var Gt = Up(o, g); using var M = Up(o, m); using var V = Up(o, v);
            Assert.Equal(g.Sum(x => (double)x * x), o.SumOfSquares(Gt), 3);
            o.AdamW(P, Gt, M, V, s);
            var pa = Down(o, P);
            for (int i = 0; i < n; i++)
            {
                double gi = g[i] * 0.5, mi = 0.9 * m[i] + 0.1 * gi, vi = 0.95 * v[i] + 0.05 * gi * gi;
                double expected = p[i] - 0.01 * (mi / 0.19 / (Math.Sqrt(vi / 0.0975) + 1e-8) + 0.1 * p[i]);
                Assert.True(Math.Abs(expected - pa[i]) < 1e-5, $"p[{i}]: {pa[i]} vs {expected}");
            }
        }
    }

    private static ModelConfig Tiny(bool tied = false) => new ModelConfig
    {
        Dim = 16, HiddenDim = 24, Layers = 2, Heads = 4, KvHeads = 2, VocabSize = 20, MaxSeqLen = 32, BosTokenId = 1, EosTokenIds = [2],
        TiedEmbeddings = tied,
    }.Validated("tiny");

    [Theory]
    [InlineData("ilgpu-cpu", false)]
    [InlineData("ilgpu-cpu", true)]
    [InlineData("ilgpu-cpu-wide", true)]
    public void A_model_trains_the_same_on_the_ilgpu_kernels_as_on_the_managed_backend(string backend, bool tied)
    {
        lock (Backends.Lock)
        {
            var managed = new TrainableLlama(Tiny(tied), seed: 5);
            var device = new TrainableLlama(Tiny(tied), seed: 5).UseOps(Ops(backend));
            var optManaged = new AdamW(1e-2f, warmupSteps: 2, totalSteps: 10);
            var optDevice = new AdamW(1e-2f, warmupSteps: 2, totalSteps: 10);
            int[][] data = [[1, 5, 9, 3, 17, 4, 8, 2], [1, 7, 7, 12, 3, 19, 6, 11, 5, 2]];
            for (int step = 0; step < 3; step++)
            {
                managed.ZeroGrad(); device.ZeroGrad();
                var seq = data[step % 2];
                float a = managed.AccumulateGradients(seq, 0.5f, managed.Grads, answerTokens: 3, answerWeight: 4f);
                float b = device.AccumulateGradients(seq, 0.5f, device.Grads, answerTokens: 3, answerWeight: 4f);
                Assert.Equal(a, b, 4);
                foreach (var name in managed.Parameters.Keys)
                    Compare.Close(device.Grads.ToHost(name), managed.Grads.ToHost(name), 1e-4, $"step {step} grad {name}");
                Assert.Equal(optManaged.Update(managed), optDevice.Update(device), 4);
            }
            device.SyncToHost();
            foreach (var name in managed.Parameters.Keys)
                Compare.Close(device.Parameters[name], managed.Parameters[name], 1e-4, "parameter " + name);
            Compare.Close(device.Logits(data[0]), managed.Logits(data[0]), 1e-4, "logits");
        }
    }

    [Theory, MemberData(nameof(AllOps))]
    public void Distilling_a_subset_against_a_frozen_teacher_matches_finite_differences(string backend)
    {
        lock (Backends.Lock)
        {
            var teacher = new TrainableLlama(Tiny(), seed: 1);
            var student = new TrainableLlama(Tiny(), seed: 2);
            if (backend != "cpu") student.UseOps(Ops(backend));
            student.IsTrainable = n => n.Contains("self_attn.k_proj");
            int[] tokens = [1, 4, 9, 13, 2, 7];
            var teacherLogits = teacher.Logits(tokens);
            student.ZeroGrad();
            student.AccumulateDistillationGradients(tokens, teacherLogits, 1f, student.Grads);
            Assert.DoesNotContain("model.layers.0.self_attn.q_proj.weight", student.Grads.Names); // frozen: no gradient at all
            var name = "model.layers.1.self_attn.k_proj.weight";
            var p = student.Parameters[name];
            var rng = new Random(9);
            double L()
            {
                student.SyncFromHost();
                var logits = student.Logits(tokens);
                return G_Kl(teacherLogits, logits, student.Config.VocabSize);
            }
            student.SyncToHost();
            Check("d" + name, p, student.Grads.ToHost(name), L, rng, eps: 1e-2f, tol: 5e-2);
        }
    }

    [Theory]
    [InlineData("cpu", 0f)]
    [InlineData("cpu", 0.25f)]
    [InlineData("ilgpu-cpu", 0f)]
    public void Prompt_and_answer_weights_give_the_gradient_of_the_weighted_loss(string backend, float promptWeight)
    {
        lock (Backends.Lock)
        {
            var model = new TrainableLlama(Tiny(), seed: 3);
            if (backend != "cpu") model.UseOps(Ops(backend));
            int[] seq = [1, 6, 9, 4, 13, 7, 19, 3, 5];
            int answer = 3, t = seq.Length - 1;
            const float answerWeight = 4f, weight = 0.5f;
            model.ZeroGrad();
            model.AccumulateGradients(seq, weight, model.Grads, answer, answerWeight, promptWeight);
            // The loss written out: rows before the answer weigh promptWeight, answer rows answerWeight, over a divisor
            // that counts the prompt rows once.
            double L()
            {
                model.SyncFromHost();
                var logits = model.Logits(seq.AsSpan(0, seq.Length - 1));
                double sum = 0;
                for (int r = 0; r < t; r++) sum += (r >= t - answer ? answerWeight : promptWeight) * RowLoss(logits, seq[1..], r,
                    model.Config.VocabSize);
                return weight * sum / (t - answer + answer * answerWeight);
            }
            model.SyncToHost();
            var rng = new Random(4);
            foreach (var name in new[] { "model.embed_tokens.weight", "model.layers.0.self_attn.v_proj.weight",
                "model.layers.1.mlp.down_proj.weight" })
                Check("d" + name, model.Parameters[name], model.Grads.ToHost(name), L, rng, eps: 1e-2f, tol: 5e-2);
        }
    }

    /// <summary>Every training op of the ILGPU kernels on a CUDA GPU against its finite differences and formulas, as
    /// above for the CPU accelerator.</summary>
    [CudaFact]
    public void Training_ops_match_their_references_on_cuda()
    {
        MatMul("cuda");
        Backward_ops_accumulate_into_their_outputs("cuda");
        RmsNorm("cuda");
        Rope_backward_is_the_transposed_rotation("cuda");
        SwiGlu("cuda");
        Causal_gqa_attention("cuda");
        Embedding_cross_entropy_and_kl("cuda");
        AdamW_step_and_gradient_norm_match_their_formulas("cuda");
        Distilling_a_subset_against_a_frozen_teacher_matches_finite_differences("cuda");
        Prompt_and_answer_weights_give_the_gradient_of_the_weighted_loss("cuda", 0f);
    }

    /// <summary>A whole model trained on the CUDA kernels follows the managed backend step for step.</summary>
    [CudaTheory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_model_trains_the_same_on_cuda_as_on_the_managed_backend(bool tied) =>
        A_model_trains_the_same_on_the_ilgpu_kernels_as_on_the_managed_backend("cuda", tied);
}
