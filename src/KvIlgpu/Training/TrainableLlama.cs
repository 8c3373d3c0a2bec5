using KvIlgpu.Models;

namespace KvIlgpu.Training;

/// <summary>A Llama model's f32 parameters with gradients, and its forward and backward pass over one token sequence
/// on the CPU (ForwardBackward' ops). Parameters are addressed by Hugging Face names, and IsTrainable picks which ones get
/// gradients, so the same core trains a whole model or a subset against a frozen one.</summary>
internal sealed class TrainableLlama
{
    public ModelConfig Config { get; }
    public Dictionary<string, float[]> Parameters { get; } = [];
    public Func<string, bool> IsTrainable
    {
        get;
        set { field = value; _grads?.Dispose(); _grads = null; } // gradient sets hold the trainable parameters only
    } = _ => true;
    /// <summary>A map applied to every layer's keys (after RoPE) and values before attention, trained with the model
    /// (null: none).</summary>
    public IKvTransform? KvTransform { get; set; }
    private readonly RopeTable _rope;

    /// <summary>A freshly initialised model (seeded); RoPE runs half-split, as the trainer saves Hugging Face folders,
    /// unless ropeLayout says otherwise (a loaded model keeps its own).</summary>
    public TrainableLlama(ModelConfig config, int seed, RopeLayout ropeLayout = RopeLayout.HalfSplit)
    {
        Config = config with { RopeLayout = ropeLayout };
        _rope = new RopeTable(Config);
        var rng = new Random(seed);
        void Init(string name, int n, float std) => Parameters[name] = Enumerable.Range(0, n).Select(_ =>
            (float)(Normal(rng) * std)).ToArray();
        var c = Config;
        float std = 0.02f, resid = 0.02f / MathF.Sqrt(2 * c.Layers);
        Init("model.embed_tokens.weight", c.VocabSize * c.Dim, std);
        for (int l = 0; l < c.Layers; l++)
        {
            string p = $"model.layers.{l}.";
            Parameters[p + "input_layernorm.weight"] = Enumerable.Repeat(1f, c.Dim).ToArray();
            Parameters[p + "post_attention_layernorm.weight"] = Enumerable.Repeat(1f, c.Dim).ToArray();
            Init(p + "self_attn.q_proj.weight", c.QDim * c.Dim, std);
            Init(p + "self_attn.k_proj.weight", c.KvDim * c.Dim, std);
            Init(p + "self_attn.v_proj.weight", c.KvDim * c.Dim, std);
            Init(p + "self_attn.o_proj.weight", c.Dim * c.QDim, resid);
            Init(p + "mlp.gate_proj.weight", c.HiddenDim * c.Dim, std);
            Init(p + "mlp.up_proj.weight", c.HiddenDim * c.Dim, std);
            Init(p + "mlp.down_proj.weight", c.Dim * c.HiddenDim, resid);
        }
        Parameters["model.norm.weight"] = Enumerable.Repeat(1f, c.Dim).ToArray();
        if (!c.TiedEmbeddings) Init("lm_head.weight", c.VocabSize * c.Dim, std);
        _p = Parameters.ToDictionary(kv => kv.Key, kv => Ops.Wrap(kv.Value));
    }

    /// <summary>A loaded model's weights as a trainable model (its own RoPE layout; models with attention biases are not
    /// supported by the training core).</summary>
    public static TrainableLlama FromWeights(LlamaWeights weights)
    {
        if (weights.Config.AttentionBias)
            throw new NotSupportedException($"{weights.Source}: the training core has no attention biases (a Qwen2-style model)");
        var model = new TrainableLlama(weights.Config, 0, weights.Config.RopeLayout);
        foreach (var (name, values) in new TrainableLlamaLoader(weights).Parameters) values.CopyTo(model.Parameters[name], 0);
        model.SyncFromHost();
        return model;
    }

    private static double Normal(Random rng) => Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());

    /// <summary>Where the forward and backward run (managed SIMD on the CPU unless given).</summary>
    public ITrainingOps Ops { get; private set; } = ManagedTrainingOps.Instance;
    private Dictionary<string, TrainingTensor> _p = [];
    private GradientSet? _grads;

    /// <summary>The gradients that the optimizer reads (zeroed by ZeroGrad).</summary>
    public GradientSet Grads => _grads ??= NewGradients();

    /// <summary>Moves the parameters to another training backend (an accelerator); the host arrays in Parameters are
    /// brought up to date by SyncToHost.</summary>
    public TrainableLlama UseOps(ITrainingOps ops)
    {
        SyncToHost();
        Ops = ops;
        _p = Parameters.ToDictionary(kv => kv.Key, kv => ops.Wrap(kv.Value));
        _grads = null;
        return this;
    }

    /// <summary>Copies the backend's parameter values into the host arrays of Parameters.</summary>
    public void SyncToHost() { foreach (var (name, t) in _p) Ops.ToHost(t, Parameters[name]); }

    /// <summary>Copies the host arrays of Parameters to the backend (after they were changed on the host).</summary>
    public void SyncFromHost() { foreach (var (name, t) in _p) Ops.FromHost(Parameters[name], t); }

    /// <summary>Wraps parameters added to Parameters after construction (a KV transform's) and drops the gradients, which
    /// are re-made with them.</summary>
    public void SyncParametersAdded()
    {
        foreach (var (name, values) in Parameters) if (!_p.ContainsKey(name)) _p[name] = Ops.Wrap(values);
        _grads = null;
    }

    internal TrainingTensor Tensor(string name) => _p[name];
    private TrainingTensor P(string name) => Tensor(name);

    /// <summary>A zeroed gradient set shaped like the trainable parameters (frozen ones get none), on the model's
    /// backend.</summary>
    public GradientSet NewGradients() =>
        new(Ops, Parameters.Where(kv => IsTrainable(kv.Key)).ToDictionary(kv => kv.Key, kv => Ops.Allocate(kv.Value.Length)));
    private string Head => Config.TiedEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight";

    private sealed class LayerActs : IDisposable
    {
        public TrainingTensor X = null!, Xn = null!, Q = null!, K = null!, V = null!, Probs = null!, Att = null!, X2 = null!, X2n = null!,
            Gate = null!, Up = null!, Act = null!;
        // The keys and values before the KV transform, when there is one (K and V then hold its output).
        public TrainingTensor? KIn, VIn;
        public void Dispose() { foreach (var t in new[] { Xn, Q, K, V, Probs, Att, X2, X2n, Gate, Up, Act, KIn, VIn }) t?.Dispose(); }
    }

    /// <summary>Logits [T, Vocab] for a sequence (positions 0..T-1).</summary>
    public float[] Logits(ReadOnlySpan<int> tokens)
    {
        using var logits = Forward(tokens, out var acts, out var finalX);
        foreach (var a in acts) { a.Dispose(); a.X.Dispose(); }
        finalX.Dispose();
        var host = new float[logits.Length];
        Ops.ToHost(logits, host);
        return host;
    }

    private TrainingTensor Forward(ReadOnlySpan<int> tokens, out List<LayerActs> acts, out TrainingTensor finalX)
    {
        var c = Config;
        var o = Ops;
        int t = tokens.Length, d = c.Dim;
        var x = o.Allocate(t * d);
        o.Embed(tokens, P("model.embed_tokens.weight"), x, d);
        acts = [];
        for (int l = 0; l < c.Layers; l++)
        {
            string p = $"model.layers.{l}.";
            var a = new LayerActs { X = x };
            a.Xn = o.Allocate(t * d); o.RmsNorm(x, P(p + "input_layernorm.weight"), a.Xn, t, c.RmsNormEps);
            a.Q = o.Allocate(t * c.QDim); o.MatMul(a.Xn, P(p + "self_attn.q_proj.weight"), a.Q, t, d, c.QDim);
            a.K = o.Allocate(t * c.KvDim); o.MatMul(a.Xn, P(p + "self_attn.k_proj.weight"), a.K, t, d, c.KvDim);
            a.V = o.Allocate(t * c.KvDim); o.MatMul(a.Xn, P(p + "self_attn.v_proj.weight"), a.V, t, d, c.KvDim);
            o.Rope(a.Q, t, c.Heads, c.HeadDim, _rope, c.RopeLayout, 1);
            o.Rope(a.K, t, c.KvHeads, c.HeadDim, _rope, c.RopeLayout, 1);
            if (KvTransform is { } transform)
            {
                (a.KIn, a.VIn) = (a.K, a.V);
                a.K = transform.Forward(o, l, Projection.KvPart.Key, a.KIn, t);
                a.V = transform.Forward(o, l, Projection.KvPart.Value, a.VIn, t);
            }
            a.Att = o.Allocate(t * c.QDim); a.Probs = o.Allocate(c.Heads * t * t);
            o.Attention(a.Q, a.K, a.V, a.Att, a.Probs, t, c.Heads, c.KvHeads, c.HeadDim);
            using (var attnOut = o.Allocate(t * d))
            {
                o.MatMul(a.Att, P(p + "self_attn.o_proj.weight"), attnOut, t, c.QDim, d);
                a.X2 = o.Allocate(t * d); o.Add(x, attnOut, a.X2);
            }
            a.X2n = o.Allocate(t * d); o.RmsNorm(a.X2, P(p + "post_attention_layernorm.weight"), a.X2n, t, c.RmsNormEps);
            a.Gate = o.Allocate(t * c.HiddenDim); o.MatMul(a.X2n, P(p + "mlp.gate_proj.weight"), a.Gate, t, d, c.HiddenDim);
            a.Up = o.Allocate(t * c.HiddenDim); o.MatMul(a.X2n, P(p + "mlp.up_proj.weight"), a.Up, t, d, c.HiddenDim);
            a.Act = o.Allocate(t * c.HiddenDim); o.SwiGlu(a.Gate, a.Up, a.Act);
            x = o.Allocate(t * d);
            using (var down = o.Allocate(t * d))
            {
                o.MatMul(a.Act, P(p + "mlp.down_proj.weight"), down, t, c.HiddenDim, d);
                o.Add(a.X2, down, x);
            }
            acts.Add(a);
        }
        finalX = x;
        using var xn = o.Allocate(t * d); o.RmsNorm(x, P("model.norm.weight"), xn, t, c.RmsNormEps);
        var logits = o.Allocate(t * c.VocabSize); o.MatMul(xn, P(Head), logits, t, d, c.VocabSize);
        return logits;
    }

    /// <summary>Next-token cross-entropy of tokens[1..] given tokens[..^1]; adds the gradient (times weight) into Grads.
    /// Returns the mean loss.</summary>
    public float AccumulateGradients(ReadOnlySpan<int> sequence, float weight = 1f) => AccumulateGradients(sequence, weight, Grads);

    /// <summary>As AccumulateGradients, adding into the given gradient set (one set per thread when micro-batches run
    /// in parallel). The last answerTokens targets count answerWeight times in the loss being differentiated (a
    /// weighted mean over tokens) and the others promptWeight times; the mean's divisor counts the others once whatever
    /// promptWeight is, so a sequence trained on its answer alone moves the answer exactly as much as one trained on
    /// everything. The returned loss is the plain mean.</summary>
    public float AccumulateGradients(ReadOnlySpan<int> sequence, float weight, GradientSet grads, int answerTokens = 0,
        float answerWeight = 1f,
        float promptWeight = 1f)
    {
        var c = Config;
        var input = sequence[..^1];
        int t = input.Length;
        using var logits = Forward(input, out var acts, out var finalX);
        answerTokens = Math.Clamp(answerTokens, 0, t);
        float total = t - answerTokens + answerTokens * answerWeight;
        var rowScale = new float[t];
        for (int r = 0; r < t; r++) rowScale[r] = weight * (r >= t - answerTokens ? answerWeight : promptWeight) / total;
        using var dLogits = Ops.Allocate(logits.Length);
        float loss = Ops.CrossEntropy(logits, sequence[1..], rowScale, dLogits, c.VocabSize);
        Backward(input, acts, finalX, dLogits, grads);
        return loss;
    }

    /// <summary>The gradient of a batch's mean loss (each sequence weighted 1/n, its last AnswerTokens targets weighted
    /// answerWeight and the rest PromptWeight), added into Grads in a fixed order, so the sum is deterministic. On the
    /// managed backend the sequences run in parallel with gradient sets of their own; on an accelerator one after
    /// another. Returns each sequence's mean loss.</summary>
    public float[] AccumulateBatch(IReadOnlyList<TrainingSequence> batch, float answerWeight = 1f, CancellationToken ct = default)
    {
        int n = batch.Count;
        var losses = new float[n];
        if (Ops.ParallelMicroBatches)
        {
            var grads = new GradientSet[n];
            Parallel.For(0, n, new ParallelOptions { CancellationToken = ct }, i =>
            {
                grads[i] = NewGradients();
                losses[i] = AccumulateGradients(batch[i].Ids, 1f / n, grads[i], batch[i].AnswerTokens, answerWeight, batch[i].PromptWeight);
            });
            foreach (var g in grads) { Grads.Add(g); g.Dispose(); }
        }
        else
            for (int i = 0; i < n; i++)
            {
                ct.ThrowIfCancellationRequested();
                losses[i] = AccumulateGradients(batch[i].Ids, 1f / n, Grads, batch[i].AnswerTokens, answerWeight, batch[i].PromptWeight);
            }
        return losses;
    }

    /// <summary>KL(teacher || this model) over a sequence's next-token distributions, teacherLogits [T, Vocab] from a
    /// frozen model; adds the gradient (times weight) into grads and returns the mean KL. With IsTrainable picking a
    /// subset, this distils that subset against the teacher.</summary>
    public float AccumulateDistillationGradients(ReadOnlySpan<int> tokens, float[] teacherLogits, float weight, GradientSet grads)
    {
        using var logits = Forward(tokens, out var acts, out var finalX);
        using var teacher = Ops.Wrap(teacherLogits);
        using var dLogits = Ops.Allocate(logits.Length);
        float loss = Ops.KlDivergence(teacher, logits, dLogits, Config.VocabSize);
        if (weight != 1f) Ops.Scale(dLogits, weight);
        Backward(tokens, acts, finalX, dLogits, grads);
        return loss;
    }

    /// <summary>MatryoshkaKV's distillation loss on one sequence: klWeight KL(teacher || this model) + ceWeight
    /// cross-entropy of sequence[1..] given sequence[..^1], teacherLogits [T - 1, Vocab] from the same model without its
    /// KV transform. Adds the gradient (times weight) into grads; returns the two mean losses.</summary>
    public (float Kl, float CrossEntropy) AccumulateKvDistillation(ReadOnlySpan<int> sequence, float[] teacherLogits, float klWeight,
        float ceWeight, float weight, GradientSet grads)
    {
        var input = sequence[..^1];
        int t = input.Length;
        using var logits = Forward(input, out var acts, out var finalX);
        using var teacher = Ops.Wrap(teacherLogits);
        using var dLogits = Ops.Allocate(logits.Length);
        using var dCe = Ops.Allocate(logits.Length);
        float kl = Ops.KlDivergence(teacher, logits, dLogits, Config.VocabSize);
        Ops.Scale(dLogits, weight * klWeight);
        float ce = Ops.CrossEntropy(logits, sequence[1..], Enumerable.Repeat(weight * ceWeight / t, t).ToArray(), dCe, Config.VocabSize);
        Ops.Add(dLogits, dCe, dLogits);
        Backward(input, acts, finalX, dLogits, grads);
        return (kl, ce);
    }

    private void Backward(ReadOnlySpan<int> tokens, List<LayerActs> acts, TrainingTensor finalX, TrainingTensor dLogits, GradientSet grads)
    {
        var c = Config;
        var o = Ops;
        int t = tokens.Length, d = c.Dim;
        TrainingTensor? Gr(string name) => IsTrainable(name) ? grads[name] : null;
        using (var xn = o.Allocate(t * d))
        using (var dxn = o.Allocate(t * d))
        {
            o.RmsNorm(finalX, P("model.norm.weight"), xn, t, c.RmsNormEps);
            o.MatMulBackward(xn, P(Head), dLogits, dxn, Gr(Head), t, d, c.VocabSize);
            var dx = o.Allocate(t * d);
            o.RmsNormBackward(finalX, P("model.norm.weight"), dxn, dx, Gr("model.norm.weight"), t, c.RmsNormEps);
            finalX.Dispose();
            for (int l = c.Layers - 1; l >= 0; l--)
            {
                string p = $"model.layers.{l}.";
                using var a = acts[l];
                // MLP: x_out = x2 + down(swiglu(gate(x2n), up(x2n)))
                using var dAct = o.Allocate(t * c.HiddenDim);
                o.MatMulBackward(a.Act, P(p + "mlp.down_proj.weight"), dx, dAct, Gr(p + "mlp.down_proj.weight"), t, c.HiddenDim, d);
                using var dGate = o.Allocate(t * c.HiddenDim);
                using var dUp = o.Allocate(t * c.HiddenDim);
                o.SwiGluBackward(a.Gate, a.Up, dAct, dGate, dUp);
                using var dX2n = o.Allocate(t * d);
                o.MatMulBackward(a.X2n, P(p + "mlp.gate_proj.weight"), dGate, dX2n, Gr(p + "mlp.gate_proj.weight"), t, d, c.HiddenDim);
                o.MatMulBackward(a.X2n, P(p + "mlp.up_proj.weight"), dUp, dX2n, Gr(p + "mlp.up_proj.weight"), t, d, c.HiddenDim);
                var dX2 = dx; // the residual passes dx through; the norm's gradient adds to it
                o.RmsNormBackward(a.X2, P(p + "post_attention_layernorm.weight"), dX2n, dX2, Gr(p + "post_attention_layernorm.weight"), t,
                    c.RmsNormEps);
                // Attention: x2 = x + o(att(q, k, v))
                using var dAtt = o.Allocate(t * c.QDim);
                o.MatMulBackward(a.Att, P(p + "self_attn.o_proj.weight"), dX2, dAtt, Gr(p + "self_attn.o_proj.weight"), t, c.QDim, d);
                using var dq = o.Allocate(t * c.QDim);
                var dk = o.Allocate(t * c.KvDim);
                var dv = o.Allocate(t * c.KvDim);
                o.AttentionBackward(a.Q, a.K, a.V, a.Probs, dAtt, dq, dk, dv, t, c.Heads, c.KvHeads, c.HeadDim);
                if (KvTransform is { } transform && a.KIn != null && a.VIn != null)
                {
                    var (dkOut, dvOut) = (dk, dv);
                    dk = transform.Backward(o, l, Projection.KvPart.Key, a.KIn, dkOut, t, grads);
                    dv = transform.Backward(o, l, Projection.KvPart.Value, a.VIn, dvOut, t, grads);
                    dkOut.Dispose();
                    dvOut.Dispose();
                }
                o.Rope(dq, t, c.Heads, c.HeadDim, _rope, c.RopeLayout, -1);
                o.Rope(dk, t, c.KvHeads, c.HeadDim, _rope, c.RopeLayout, -1);
                using var dXn = o.Allocate(t * d);
                o.MatMulBackward(a.Xn, P(p + "self_attn.q_proj.weight"), dq, dXn, Gr(p + "self_attn.q_proj.weight"), t, d, c.QDim);
                o.MatMulBackward(a.Xn, P(p + "self_attn.k_proj.weight"), dk, dXn, Gr(p + "self_attn.k_proj.weight"), t, d, c.KvDim);
                o.MatMulBackward(a.Xn, P(p + "self_attn.v_proj.weight"), dv, dXn, Gr(p + "self_attn.v_proj.weight"), t, d, c.KvDim);
                dk.Dispose();
                dv.Dispose();
                o.RmsNormBackward(a.X, P(p + "input_layernorm.weight"), dXn, dX2, Gr(p + "input_layernorm.weight"), t, c.RmsNormEps);
                a.X.Dispose();
                dx = dX2;
            }
            if (IsTrainable("model.embed_tokens.weight")) o.EmbeddingBackward(tokens, dx, grads["model.embed_tokens.weight"], d);
            dx.Dispose();
        }
    }

    public void ZeroGrad() => Grads.Zero();

    /// <summary>The weights as LlamaWeights (f32, HF layout with half-split RoPE), for inference or saving.</summary>
    public LlamaWeights ToWeights(string source = "trained")
    {
        var c = Config;
        SyncToHost();
        WeightTensor T(string name, int rows, int cols) => WeightTensor.FromF32(name, rows, cols, (float[])Parameters[name].Clone());
        var layers = Enumerable.Range(0, c.Layers).Select(l =>
        {
            string p = $"model.layers.{l}.";
            return new LayerWeights(T(p + "input_layernorm.weight", 1, c.Dim), T(p + "self_attn.q_proj.weight", c.QDim, c.Dim),
                T(p + "self_attn.k_proj.weight", c.KvDim, c.Dim), T(p + "self_attn.v_proj.weight", c.KvDim, c.Dim),
                T(p + "self_attn.o_proj.weight", c.Dim, c.QDim), null, null, null, T(p + "post_attention_layernorm.weight", 1, c.Dim),
                T(p + "mlp.gate_proj.weight", c.HiddenDim, c.Dim), T(p + "mlp.down_proj.weight", c.Dim, c.HiddenDim), T(p
                    + "mlp.up_proj.weight", c.HiddenDim, c.Dim));
        }).ToList();
        var emb = T("model.embed_tokens.weight", c.VocabSize, c.Dim);
        return new LlamaWeights(c, emb, layers, T("model.norm.weight", 1, c.Dim), c.TiedEmbeddings ? emb : T("lm_head.weight",
            c.VocabSize, c.Dim), source);
    }
}
