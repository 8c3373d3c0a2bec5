namespace KvIlgpu.Compression;

/// <summary>The prefill metric of SPEC 2: for each query head, the (squared) attention probabilities of the window
/// queries summed per key, max-pooled along the key axis (kernel k, stride 1, padding k/2), then summed over the query
/// heads of each GQA group. Window sums are gathered while the prompt's last chunk runs.</summary>
internal sealed class ObservationWindowMetric
{
    private readonly float[][][] _sums; // [layer][query head][key]

    public ObservationWindowMetric(int layers, int heads, int keys)
    {
        _sums = Enumerable.Range(0, layers).Select(_ => Enumerable.Range(0, heads).Select(_ => new float[keys]).ToArray()).ToArray();
    }

    /// <summary>Adds one window query's probabilities for every query head of a layer: probs[h * stride + t].</summary>
    public void Add(int layer, ReadOnlySpan<float> probs, int stride, int visible, bool squared)
    {
        var sums = _sums[layer];
        for (int h = 0; h < sums.Length; h++)
            for (int t = 0; t < visible && t < sums[h].Length; t++)
            {
                float p = probs[h * stride + t];
                sums[h][t] += squared ? p * p : p;
            }
    }

    /// <summary>The metric of each key of one KV head: sum over its group of the max-pooled window sums.</summary>
    public float[] Finish(int layer, int kvHead, int groupSize, int poolKernel)
    {
        int n = _sums[layer][0].Length, half = poolKernel / 2;
        var result = new float[n];
        for (int q = kvHead * groupSize; q < (kvHead + 1) * groupSize; q++)
        {
            var s = _sums[layer][q];
            for (int t = 0; t < n; t++)
            {
                float m = float.NegativeInfinity;
                for (int j = Math.Max(0, t - half); j <= Math.Min(n - 1, t + half); j++) m = Math.Max(m, s[j]);
                result[t] += m;
            }
        }
        return result;
    }
}
