namespace KvIlgpu.Engine;

/// <summary>How the next token is drawn. Temperature 0 means greedy (argmax).</summary>
/// <param name="TopK">Keep only the K most likely tokens (0: all).</param>
/// <param name="TopP">Keep the smallest set of tokens whose probability reaches P (1: all).</param>
/// <param name="Seed">Seed of the random draw; the same seed gives the same tokens.</param>
public sealed record SamplingOptions(float Temperature = 0f, int TopK = 0, float TopP = 1f, int Seed = 0)
{
    public static SamplingOptions Greedy { get; } = new();

    public void Validate()
    {
        if (Temperature < 0 || float.IsNaN(Temperature)) throw new ArgumentOutOfRangeException(nameof(Temperature), $"--temperature must be >= 0 (got {Temperature})");
        if (TopK < 0) throw new ArgumentOutOfRangeException(nameof(TopK), $"--top-k must be >= 0 (got {TopK})");
        if (!(TopP > 0 && TopP <= 1)) throw new ArgumentOutOfRangeException(nameof(TopP), $"--top-p must be in (0, 1] (got {TopP})");
    }
}
