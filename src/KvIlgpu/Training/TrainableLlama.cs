using KvIlgpu.Models;

namespace KvIlgpu.Training;

/// <summary>A Llama model's f32 parameters with gradients, and its forward and backward pass over one token sequence
/// on the CPU (Gradients' ops). Parameters are addressed by Hugging Face names, and IsTrainable picks which ones get
/// gradients, so the same core trains a whole model or a subset against a frozen one.</summary>
public sealed class TrainableLlama
{
    public ModelConfig Config { get; }
    public Dictionary<string, float[]> Parameters { get; } = [];
    public Dictionary<string, float[]> Grads { get; } = [];
    public Func<string, bool> IsTrainable { get; set; } = _ => true;
    private readonly RopeTable _rope;

    public TrainableLlama(ModelConfig config, int seed)
    {
        Config = config with { RopeLayout = RopeLayout.HalfSplit };
        _rope = new RopeTable(Config);
        var rng = new Random(seed);
        void Init(string name, int n, float std) => Parameters[name] = Enumerable.Range(0, n).Select(_ => (float)(Normal(rng) * std)).ToArray();
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
        foreach (var (k, v) in Parameters) Grads[k] = new float[v.Length];
    }

    private static double Normal(Random rng) => Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());

    private float[] P(string name) => Parameters[name];
    private readonly ThreadLocal<Dictionary<string, float[]>?> _grads = new();
    private Dictionary<string, float[]> G => _grads.Value ?? Grads;
    private Span<float> Gr(string name) => IsTrainable(name) ? G[name] : Span<float>.Empty;

    /// <summary>A zeroed gradient set shaped like the parameters.</summary>
    public Dictionary<string, float[]> NewGradients() => Parameters.ToDictionary(kv => kv.Key, kv => new float[kv.Value.Length]);
    private string Head => Config.TiedEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight";

    private sealed class LayerActs
    {
        public float[] X = [], Xn = [], Q = [], K = [], V = [], Probs = [], Att = [], X2 = [], X2n = [], Gate = [], Up = [], Act = [];
    }

    /// <summary>Logits [T, Vocab] for a sequence (positions 0..T-1).</summary>
    public float[] Logits(ReadOnlySpan<int> tokens) => Forward(tokens, out _, out _);

    private float[] Forward(ReadOnlySpan<int> tokens, out List<LayerActs> acts, out float[] finalX)
    {
        var c = Config;
        int t = tokens.Length, d = c.Dim;
        var positions = Enumerable.Range(0, t).ToArray();
        var x = new float[t * d];
        var emb = P("model.embed_tokens.weight");
        for (int r = 0; r < t; r++) emb.AsSpan(tokens[r] * d, d).CopyTo(x.AsSpan(r * d));
        acts = [];
        for (int l = 0; l < c.Layers; l++)
        {
            string p = $"model.layers.{l}.";
            var a = new LayerActs { X = x };
            a.Xn = new float[t * d]; Gradients.RmsNorm(x, P(p + "input_layernorm.weight"), a.Xn, t, c.RmsNormEps);
            a.Q = new float[t * c.QDim]; Gradients.MatMul(a.Xn, P(p + "self_attn.q_proj.weight"), a.Q, t, d, c.QDim);
            a.K = new float[t * c.KvDim]; Gradients.MatMul(a.Xn, P(p + "self_attn.k_proj.weight"), a.K, t, d, c.KvDim);
            a.V = new float[t * c.KvDim]; Gradients.MatMul(a.Xn, P(p + "self_attn.v_proj.weight"), a.V, t, d, c.KvDim);
            Gradients.Rope(a.Q, t, c.Heads, c.HeadDim, positions, _rope, c.RopeLayout);
            Gradients.Rope(a.K, t, c.KvHeads, c.HeadDim, positions, _rope, c.RopeLayout);
            a.Att = new float[t * c.QDim]; a.Probs = new float[c.Heads * t * t];
            Gradients.Attention(a.Q, a.K, a.V, a.Att, a.Probs, t, c.Heads, c.KvHeads, c.HeadDim);
            var o = new float[t * d]; Gradients.MatMul(a.Att, P(p + "self_attn.o_proj.weight"), o, t, c.QDim, d);
            a.X2 = x.Zip(o, (u, v) => u + v).ToArray();
            a.X2n = new float[t * d]; Gradients.RmsNorm(a.X2, P(p + "post_attention_layernorm.weight"), a.X2n, t, c.RmsNormEps);
            a.Gate = new float[t * c.HiddenDim]; Gradients.MatMul(a.X2n, P(p + "mlp.gate_proj.weight"), a.Gate, t, d, c.HiddenDim);
            a.Up = new float[t * c.HiddenDim]; Gradients.MatMul(a.X2n, P(p + "mlp.up_proj.weight"), a.Up, t, d, c.HiddenDim);
            a.Act = new float[t * c.HiddenDim]; Gradients.SwiGlu(a.Gate, a.Up, a.Act);
            var down = new float[t * d]; Gradients.MatMul(a.Act, P(p + "mlp.down_proj.weight"), down, t, c.HiddenDim, d);
            x = a.X2.Zip(down, (u, v) => u + v).ToArray();
            acts.Add(a);
        }
        finalX = x;
        var xn = new float[t * d]; Gradients.RmsNorm(x, P("model.norm.weight"), xn, t, c.RmsNormEps);
        var logits = new float[t * c.VocabSize]; Gradients.MatMul(xn, P(Head), logits, t, d, c.VocabSize);
        return logits;
    }

    /// <summary>Next-token cross-entropy of tokens[1..] given tokens[..^1]; adds the gradient (times weight) into Grads.
    /// Returns the mean loss.</summary>
    public float AccumulateGradients(ReadOnlySpan<int> sequence, float weight = 1f) => AccumulateGradients(sequence, weight, Grads);

    /// <summary>As AccumulateGradients, adding into the given gradient buffers (one set per thread when micro-batches
    /// run in parallel).</summary>
    public float AccumulateGradients(ReadOnlySpan<int> sequence, float weight, Dictionary<string, float[]> grads)
    {
        _grads.Value = grads;
        var c = Config;
        var input = sequence[..^1];
        int t = input.Length, d = c.Dim;
        var logits = Forward(input, out var acts, out var finalX);
        var dLogits = new float[logits.Length];
        float loss = Gradients.CrossEntropy(logits, sequence[1..], dLogits, c.VocabSize);
        if (weight != 1f) for (int i = 0; i < dLogits.Length; i++) dLogits[i] *= weight;
        Backward(input, acts, finalX, dLogits);
        return loss;
    }

    private void Backward(ReadOnlySpan<int> tokens, List<LayerActs> acts, float[] finalX, float[] dLogits)
    {
        var c = Config;
        int t = tokens.Length, d = c.Dim;
        var positions = Enumerable.Range(0, t).ToArray();
        var xn = new float[t * d]; Gradients.RmsNorm(finalX, P("model.norm.weight"), xn, t, c.RmsNormEps);
        var dxn = new float[t * d];
        Gradients.MatMulBackward(xn, P(Head), dLogits, dxn, Gr(Head), t, d, c.VocabSize);
        var dx = new float[t * d];
        Gradients.RmsNormBackward(finalX, P("model.norm.weight"), dxn, dx, NormGrad("model.norm.weight"), t, c.RmsNormEps);
        for (int l = c.Layers - 1; l >= 0; l--)
        {
            string p = $"model.layers.{l}.";
            var a = acts[l];
            // MLP: x_out = x2 + down(swiglu(gate(x2n), up(x2n)))
            var dAct = new float[t * c.HiddenDim];
            Gradients.MatMulBackward(a.Act, P(p + "mlp.down_proj.weight"), dx, dAct, Gr(p + "mlp.down_proj.weight"), t, c.HiddenDim, d);
            var dGate = new float[t * c.HiddenDim]; var dUp = new float[t * c.HiddenDim];
            Gradients.SwiGluBackward(a.Gate, a.Up, dAct, dGate, dUp);
            var dX2n = new float[t * d];
            Gradients.MatMulBackward(a.X2n, P(p + "mlp.gate_proj.weight"), dGate, dX2n, Gr(p + "mlp.gate_proj.weight"), t, d, c.HiddenDim);
            Gradients.MatMulBackward(a.X2n, P(p + "mlp.up_proj.weight"), dUp, dX2n, Gr(p + "mlp.up_proj.weight"), t, d, c.HiddenDim);
            var dX2 = (float[])dx.Clone();
            Gradients.RmsNormBackward(a.X2, P(p + "post_attention_layernorm.weight"), dX2n, dX2, NormGrad(p + "post_attention_layernorm.weight"), t, c.RmsNormEps);
            // Attention: x2 = x + o(att(q, k, v))
            var dAtt = new float[t * c.QDim];
            Gradients.MatMulBackward(a.Att, P(p + "self_attn.o_proj.weight"), dX2, dAtt, Gr(p + "self_attn.o_proj.weight"), t, c.QDim, d);
            var dq = new float[t * c.QDim]; var dk = new float[t * c.KvDim]; var dv = new float[t * c.KvDim];
            Gradients.AttentionBackward(a.Q, a.K, a.V, a.Probs, dAtt, dq, dk, dv, t, c.Heads, c.KvHeads, c.HeadDim);
            Gradients.Rope(dq, t, c.Heads, c.HeadDim, positions, _rope, c.RopeLayout, sign: -1);
            Gradients.Rope(dk, t, c.KvHeads, c.HeadDim, positions, _rope, c.RopeLayout, sign: -1);
            var dXn = new float[t * d];
            Gradients.MatMulBackward(a.Xn, P(p + "self_attn.q_proj.weight"), dq, dXn, Gr(p + "self_attn.q_proj.weight"), t, d, c.QDim);
            Gradients.MatMulBackward(a.Xn, P(p + "self_attn.k_proj.weight"), dk, dXn, Gr(p + "self_attn.k_proj.weight"), t, d, c.KvDim);
            Gradients.MatMulBackward(a.Xn, P(p + "self_attn.v_proj.weight"), dv, dXn, Gr(p + "self_attn.v_proj.weight"), t, d, c.KvDim);
            var dxIn = (float[])dX2.Clone();
            Gradients.RmsNormBackward(a.X, P(p + "input_layernorm.weight"), dXn, dxIn, NormGrad(p + "input_layernorm.weight"), t, c.RmsNormEps);
            dx = dxIn;
        }
        if (IsTrainable("model.embed_tokens.weight")) Gradients.EmbeddingBackward(tokens, dx, G["model.embed_tokens.weight"], d);
    }

    private Span<float> NormGrad(string name) => IsTrainable(name) ? G[name] : new float[Config.Dim];

    public void ZeroGrad() { foreach (var g in Grads.Values) Array.Clear(g); }

    /// <summary>The weights as LlamaWeights (f32, HF layout with half-split RoPE), for inference or saving.</summary>
    public LlamaWeights ToWeights(string source = "trained")
    {
        var c = Config;
        WeightTensor T(string name, int rows, int cols) => WeightTensor.FromF32(name, rows, cols, (float[])P(name).Clone());
        var layers = Enumerable.Range(0, c.Layers).Select(l =>
        {
            string p = $"model.layers.{l}.";
            return new LayerWeights(T(p + "input_layernorm.weight", 1, c.Dim), T(p + "self_attn.q_proj.weight", c.QDim, c.Dim),
                T(p + "self_attn.k_proj.weight", c.KvDim, c.Dim), T(p + "self_attn.v_proj.weight", c.KvDim, c.Dim),
                T(p + "self_attn.o_proj.weight", c.Dim, c.QDim), null, null, null, T(p + "post_attention_layernorm.weight", 1, c.Dim),
                T(p + "mlp.gate_proj.weight", c.HiddenDim, c.Dim), T(p + "mlp.down_proj.weight", c.Dim, c.HiddenDim), T(p + "mlp.up_proj.weight", c.HiddenDim, c.Dim));
        }).ToList();
        var emb = T("model.embed_tokens.weight", c.VocabSize, c.Dim);
        return new LlamaWeights(c, emb, layers, T("model.norm.weight", 1, c.Dim), c.TiedEmbeddings ? emb : T("lm_head.weight", c.VocabSize, c.Dim), source);
    }
}

/// <summary>AdamW (decoupled weight decay, not applied to norm weights) with global-norm gradient clipping and a
/// cosine learning-rate schedule with linear warmup.</summary>
public sealed class AdamW(float learningRate, float weightDecay = 0.1f, float beta1 = 0.9f, float beta2 = 0.95f, float eps = 1e-8f,
    float clipNorm = 1f, int warmupSteps = 0, int totalSteps = 0, float minLearningRateFraction = 0.1f)
{
    private readonly Dictionary<string, (float[] M, float[] V)> _state = [];
    public int Step { get; set; }
    /// <summary>First and second moments per parameter (for checkpoints).</summary>
    public Dictionary<string, (float[] M, float[] V)> State => _state;

    public float LearningRate(int step)
    {
        if (warmupSteps > 0 && step < warmupSteps) return learningRate * (step + 1) / warmupSteps;
        if (totalSteps <= warmupSteps) return learningRate;
        double progress = Math.Clamp((step - warmupSteps) / (double)(totalSteps - warmupSteps), 0, 1);
        return (float)(learningRate * (minLearningRateFraction + (1 - minLearningRateFraction) * 0.5 * (1 + Math.Cos(Math.PI * progress))));
    }

    /// <summary>One update of the trainable parameters; returns the gradient norm before clipping.</summary>
    public float Update(TrainableLlama model)
    {
        var names = model.Parameters.Keys.Where(model.IsTrainable).ToList();
        double sq = 0;
        foreach (var n in names) sq += System.Numerics.Tensors.TensorPrimitives.SumOfSquares(model.Grads[n]);
        float norm = (float)Math.Sqrt(sq);
        float scale = clipNorm > 0 && norm > clipNorm ? clipNorm / norm : 1f;
        float lr = LearningRate(Step);
        Step++;
        float c1 = 1 - MathF.Pow(beta1, Step), c2 = 1 - MathF.Pow(beta2, Step);
        foreach (var n in names)
        {
            var p = model.Parameters[n]; var g = model.Grads[n];
            if (!_state.TryGetValue(n, out var s)) _state[n] = s = (new float[p.Length], new float[p.Length]);
            bool decay = !n.Contains("norm");
            for (int i = 0; i < p.Length; i++)
            {
                float gi = g[i] * scale;
                s.M[i] = beta1 * s.M[i] + (1 - beta1) * gi;
                s.V[i] = beta2 * s.V[i] + (1 - beta2) * gi * gi;
                float update = s.M[i] / c1 / (MathF.Sqrt(s.V[i] / c2) + eps);
                p[i] -= lr * (update + (decay ? weightDecay * p[i] : 0));
            }
        }
        return norm;
    }
}
