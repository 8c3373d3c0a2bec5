namespace KvIlgpu.Training;

/// <summary>AdamW (decoupled weight decay, not applied to norm weights) with global-norm gradient clipping and a
/// cosine learning-rate schedule with linear warmup. The update runs on the model's training backend.</summary>
internal sealed class AdamW(float learningRate, float weightDecay = 0.1f, float beta1 = 0.9f, float beta2 = 0.95f, float eps = 1e-8f,
    float clipNorm = 1f, int warmupSteps = 0, int totalSteps = 0, float minLearningRateFraction = 0.1f)
{
    private readonly Dictionary<string, (TrainingTensor M, TrainingTensor V)> _state = [];
    public int Step { get; set; }

    public float LearningRate(int step)
    {
        if (warmupSteps > 0 && step < warmupSteps) return learningRate * (step + 1) / warmupSteps;
        if (totalSteps <= warmupSteps) return learningRate;
        double progress = Math.Clamp((step - warmupSteps) / (double)(totalSteps - warmupSteps), 0, 1);
        return (float)(learningRate * (minLearningRateFraction + (1 - minLearningRateFraction) * 0.5 * (1 + Math.Cos(Math.PI * progress))));
    }

    /// <summary>First and second moments per parameter, copied to the host (for checkpoints).</summary>
    public Dictionary<string, (float[] M, float[] V)> ExportState(TrainableLlama model) => _state.ToDictionary(kv => kv.Key, kv =>
    {
        var (m, v) = (new float[kv.Value.M.Length], new float[kv.Value.V.Length]);
        model.Ops.ToHost(kv.Value.M, m);
        model.Ops.ToHost(kv.Value.V, v);
        return (m, v);
    });

    /// <summary>Restores one parameter's moments (resuming a checkpoint).</summary>
    public void ImportState(TrainableLlama model, string name, float[] m, float[] v) => _state[name] = (model.Ops.Wrap(m),
        model.Ops.Wrap(v));

    /// <summary>One update of the trainable parameters; returns the gradient norm before clipping.</summary>
    public float Update(TrainableLlama model)
    {
        var ops = model.Ops;
        var names = model.Parameters.Keys.Where(model.IsTrainable).ToList();
        double sq = 0;
        foreach (var n in names) sq += ops.SumOfSquares(model.Grads[n]);
        float norm = (float)Math.Sqrt(sq);
        float scale = clipNorm > 0 && norm > clipNorm ? clipNorm / norm : 1f;
        float lr = LearningRate(Step);
        Step++;
        foreach (var n in names)
        {
            var p = model.Tensor(n);
            if (!_state.TryGetValue(n, out var s)) _state[n] = s = (ops.Allocate(p.Length), ops.Allocate(p.Length));
            ops.AdamW(p, model.Grads[n], s.M, s.V, new Kernels.AdamWStep
            {
                LearningRate = lr, Beta1 = beta1, Beta2 = beta2, Epsilon = eps, C1 = 1 - MathF.Pow(beta1, Step), C2 = 1 - MathF.Pow(beta2,
                    Step),
                GradScale = scale, Decay = n.Contains("norm") ? 0f : weightDecay,
            });
        }
        return norm;
    }
}
