using System.Numerics.Tensors;
using KvIlgpu.Compute;

namespace KvIlgpu.Engine;

/// <summary>Draws tokens from logits: greedy, or temperature-scaled softmax restricted by top-k then top-p
/// (as in llama.cpp and Hugging Face), from a seeded generator so runs repeat.</summary>
internal sealed class Sampler
{
    private readonly SamplingOptions _options;
    private readonly Random _random;

    public Sampler(SamplingOptions options)
    {
        options.Validate();
        _options = options;
        _random = new Random(options.Seed);
    }

    public int Next(ReadOnlySpan<float> logits)
    {
        if (_options.Temperature == 0f) return TensorPrimitives.IndexOfMax(logits);
        var probs = new float[logits.Length];
        TensorPrimitives.Divide(logits, _options.Temperature, probs);
        SimdMath.SoftMax(probs, probs);
        var order = Enumerable.Range(0, probs.Length).ToArray();
        Array.Sort(order, (a, b) => probs[b].CompareTo(probs[a]) is var c && c != 0 ? c : a.CompareTo(b));
        int keep = _options.TopK > 0 ? Math.Min(_options.TopK, order.Length) : order.Length;
        if (_options.TopP < 1f)
        {
            double cumulative = 0;
            for (int i = 0; i < keep; i++)
            {
                cumulative += probs[order[i]];
                if (cumulative >= _options.TopP) { keep = i + 1; break; }
            }
        }
        double total = 0;
        for (int i = 0; i < keep; i++) total += probs[order[i]];
        double r = _random.NextDouble() * total;
        for (int i = 0; i < keep; i++)
        {
            r -= probs[order[i]];
            if (r <= 0) return order[i];
        }
        return order[keep - 1];
    }
}
