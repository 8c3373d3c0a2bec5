using System.Diagnostics;
using KvIlgpu.Compute;
using KvIlgpu.Models;
using KvIlgpu.Training;

namespace KvIlgpu.Benchmarks;

/// <summary>Training throughput (forward + backward + AdamW, tokens per second) of the default model's shape on every
/// training backend present, side by side in one run: the managed SIMD trainer (micro-batches on all cores), and the
/// ILGPU kernels on CUDA when a GPU is present (else on the CPU accelerator, with a shorter sequence, as a check only).
/// Usage: train-throughput [sequence-length] [steps] [default|head16] (default: the default model's shape, 64-wide heads;
/// head16: the first default model's, 16-wide heads).</summary>
internal static class TrainingThroughput
{
    public static void Run(int sequenceLength, int steps, string shape = "default")
    {
        if (shape is not ("default" or "head16"))
            throw new ArgumentException($"train-throughput: shape '{shape}' is not one of default, head16");
        bool wide = shape == "default";
        int maxSeq = Math.Max(1024, sequenceLength);
        var config = wide
            ? new ModelConfig
            {
                Dim = 256, HiddenDim = 688, Layers = 4, Heads = 4, KvHeads = 2, VocabSize = 4258, MaxSeqLen = maxSeq, TiedEmbeddings = true,
                BosTokenId = 4256, EosTokenIds = [4257],
            }
            : new ModelConfig
            {
                Dim = 128, HiddenDim = 344, Layers = 4, Heads = 8, KvHeads = 2, VocabSize = 4258, MaxSeqLen = maxSeq, TiedEmbeddings = true,
                BosTokenId = 4256, EosTokenIds = [4257],
            };
        config = config.Validated(wide ? "default shape" : "head16 shape");
        Console.WriteLine($"{(wide ? "default model shape (64-wide heads, 4.0M" : "head16 model shape (16-wide heads, 1.24M")} " +
            $"parameters), {sequenceLength} " +
            $"tokens per sequence, 4 sequences per step, {steps} timed steps after 1 warm-up");
        double flops = FlopsPerToken(config, sequenceLength), managed = Measure(config, null, sequenceLength, steps);
        Console.WriteLine($"managed SIMD CPU: {managed:F0} tokens/s = {managed * flops / 1e9:F1} GFLOP/s ({flops / 1e6:F1} MFLOP per " +
            $"token, forward + backward)");
        var cuda = IlgpuBackend.TryCreate(DeviceKind.Cuda);
        if (cuda != null)
        {
            using var ops = new IlgpuTrainingOps(cuda, ownsBackend: true);
            Console.WriteLine($"ILGPU kernels on {cuda.Name}: {Measure(config, ops, sequenceLength, steps):F0} tokens/s");
        }
        else
        {
            using var ops = new IlgpuTrainingOps(IlgpuBackend.TryCreate(DeviceKind.IlgpuCpu)!, ownsBackend: true);
            int shortLength = Math.Min(sequenceLength, 64);
            Console.WriteLine($"no CUDA device; ILGPU kernels on the CPU accelerator at {shortLength} tokens: " +
                $"{Measure(config, ops, shortLength, 1):F0} tokens/s " +
                $"(managed at {shortLength}: {Measure(config, null, shortLength, steps):F0})");
        }
    }

    /// <summary>Forward + backward FLOPs per token: 2 per weight of every matrix product (output head included) and
    /// 2 x 2 per causal attention score pair (QK^T and PV, half the sequence on average), times 3 for the backward.</summary>
    public static double FlopsPerToken(ModelConfig c, int length)
    {
        double linear = c.Layers * ((double)c.Dim * (c.QDim + 2 * c.KvDim) + c.QDim * c.Dim + 3.0 * c.Dim * c.HiddenDim)
            + (double)c.VocabSize * c.Dim;
        double attention = c.Layers * 2.0 * 2 * (length + 1) / 2 * c.QDim;
        return 3 * (2 * linear + attention);
    }

    private static double Measure(ModelConfig config, ITrainingOps? ops, int length, int steps)
    {
        var model = new TrainableLlama(config, seed: 1);
        if (ops != null) model.UseOps(ops);
        var opt = new AdamW(1e-3f);
        var rng = new Random(1);
        var batch = Enumerable.Range(0, 4).Select(_ => Enumerable.Range(0, length + 1).Select(_ =>
            rng.Next(config.VocabSize)).ToArray()).ToArray();
        void Step()
        {
            model.ZeroGrad();
            model.AccumulateBatch(batch.Select(b => new TrainingSequence(b)).ToList());
            opt.Update(model);
        }
        Step();
        var clock = Stopwatch.StartNew();
        for (int s = 0; s < steps; s++) Step();
        model.SyncToHost();
        return steps * batch.Length * length / clock.Elapsed.TotalSeconds;
    }
}
