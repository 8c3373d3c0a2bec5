using System.Text.Json;

namespace KvIlgpu.Tests.Support;

/// <summary>../shared/golden/tiny-gqa.json: tokens and logits from llama2.c's run.c (fp32, greedy).</summary>
internal sealed class GoldenRun
{
    public int[] Prompt = [];
    public int[] Tokens = [];
    public Dictionary<int, float[]> Logits = [];
    public float[] Top1Gaps = [];

    public static GoldenRun Load(string path)
    {
        var root = JsonDocument.Parse(File.ReadAllText(path)).RootElement;
        return new GoldenRun
        {
            Prompt = root.GetProperty("prompt").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
            Tokens = root.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
            Logits = root.GetProperty("logits").EnumerateObject().ToDictionary(p => int.Parse(p.Name), p =>
                p.Value.EnumerateArray().Select(e => e.GetSingle()).ToArray()),
            Top1Gaps = root.TryGetProperty("top1_gaps", out var g) ? g.EnumerateArray().Select(e => e.GetSingle()).ToArray() : [],
        };
    }
}

internal static class Compare
{
    /// <summary>Largest |actual - expected| relative to the largest |expected|.</summary>
    public static double RelativeError(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected)
    {
        Assert.Equal(expected.Length, actual.Length);
        double maxDiff = 0, maxRef = 1e-30;
        for (int i = 0; i < expected.Length; i++)
        {
            maxDiff = Math.Max(maxDiff, Math.Abs(actual[i] - expected[i]));
            maxRef = Math.Max(maxRef, Math.Abs(expected[i]));
        }
        return maxDiff / maxRef;
    }

    public static double RelativeError(ReadOnlySpan<float> actual, double[] expected) =>
        RelativeError(actual, expected.Select(v => (float)v).ToArray());

    public static void Close(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, double tolerance, string what)
    {
        double err = RelativeError(actual, expected);
        Assert.True(err <= tolerance, $"{what}: relative error {err:E3} exceeds {tolerance:E1}");
    }
}
