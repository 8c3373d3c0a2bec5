namespace KvIlgpu.Engine;

/// <summary>How the next token is drawn. Temperature 0 means greedy (argmax).</summary>
/// <param name="Temperature">Softmax temperature; 0 is greedy.</param>
/// <param name="TopK">Keep only the K most likely tokens (0: all).</param>
/// <param name="TopP">Keep the smallest set of tokens whose probability reaches P (1: all).</param>
/// <param name="Seed">Seed of the random draw; the same seed gives the same tokens.</param>
public sealed record SamplingOptions(float Temperature = 0f, int TopK = 0, float TopP = 1f, int Seed = 0)
{
    /// <summary>Greedy decoding: always the most likely token.</summary>
    public static SamplingOptions Greedy { get; } = new();

    /// <summary>Throws <see cref="InvalidOptionException"/> naming the first property that has a bad value.</summary>
    public void Validate()
    {
        if (!(Temperature >= 0) || float.IsInfinity(Temperature))
            throw new InvalidOptionException(nameof(Temperature), $"{nameof(Temperature)} must be >= 0 and finite (got {Temperature})");
        if (TopK < 0) throw new InvalidOptionException(nameof(TopK), $"{nameof(TopK)} must be >= 0 (got {TopK})");
        if (!(TopP > 0 && TopP <= 1)) throw new InvalidOptionException(nameof(TopP), $"{nameof(TopP)} must be in (0, 1] (got {TopP})");
    }
}
