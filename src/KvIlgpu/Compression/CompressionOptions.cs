namespace KvIlgpu.Compression;

/// <summary>Per-request KV cache compression settings (SPEC 2-4). Policy "full" keeps everything; "kvcompress" scores
/// each cached KV by squared attention (prefill observation window, then every decode query) and evicts block-granular
/// chunks ranked across all heads and layers (Rehg, "KV-Compress: Paged KV-Cache Compression with Variable Compression
/// Rates per Attention Head", arXiv 2410.00161); the baselines are listed in EvictionPolicy.Registry. Metric settings
/// left null take the policy's own defaults.</summary>
/// <param name="ObservationWindow">Last prompt queries whose attention seeds the metric (0: all prompt queries).</param>
/// <param name="Squared">Sum squared probabilities (L2) or plain ones (L1).</param>
/// <param name="PoolKernel">Max-pool width along the key axis of the prefill metric (odd; 1 disables it).</param>
/// <param name="Interval">Compress every N decode steps (and always after prefill and when blocks run out).</param>
/// <param name="Average">Rank by the metric divided by the number of queries that could see each KV (SPEC 2's
/// "average" variant) instead of the plain sum.</param>
public sealed record CompressionOptions(
    EvictionBudget Budget,
    string Policy = "kvcompress",
    int? ObservationWindow = null,
    bool? Squared = null,
    int? PoolKernel = null,
    int Interval = 1,
    bool Average = false)
{
    public static IEnumerable<string> Policies => ["full", .. EvictionPolicy.Registry.Keys];

    public void Validate()
    {
        if (!Policies.Contains(Policy)) throw new ArgumentException($"unknown --kv-policy '{Policy}' (known: {string.Join(", ", Policies)})");
        Budget.Validate();
        if (ObservationWindow < 0) throw new ArgumentOutOfRangeException(nameof(ObservationWindow), "--observation-window must be >= 0");
        if (PoolKernel is < 1 || PoolKernel % 2 == 0) throw new ArgumentOutOfRangeException(nameof(PoolKernel), "the pooling kernel must be odd and >= 1");
        if (Interval < 1) throw new ArgumentOutOfRangeException(nameof(Interval), "--compression-interval must be >= 1");
    }

    /// <summary>An eviction metric by name: squared, plain, squared-average or plain-average; null keeps the policy's.</summary>
    public static (bool? Squared, bool Average) ParseMetric(string? metric) => metric switch
    {
        null => (null, false),
        "squared" => (true, false),
        "plain" => (false, false),
        "squared-average" => (true, true),
        "plain-average" => (false, true),
        _ => throw new ArgumentException($"metric '{metric}' must be squared, plain, squared-average or plain-average"),
    };

    /// <summary>Options for a policy written as NAME or NAME:METRIC (for example kvcompress:squared-average), so one
    /// evaluation can compare a policy's metric variants side by side.</summary>
    public static CompressionOptions ForPolicy(string spec, EvictionBudget budget)
    {
        int colon = spec.IndexOf(':');
        var (squared, average) = ParseMetric(colon < 0 ? null : spec[(colon + 1)..]);
        var options = new CompressionOptions(budget, colon < 0 ? spec : spec[..colon], Squared: squared, Average: average);
        options.Validate();
        return options;
    }

    public bool Evicts => Policy != "full";
    public EvictionPolicy EvictionPolicy => EvictionPolicy.Registry[Policy];
    public int EffectiveWindow => ObservationWindow ?? EvictionPolicy.DefaultObservationWindow;
    public bool EffectiveSquared => Squared ?? EvictionPolicy.Squared;
    public int EffectivePoolKernel => PoolKernel ?? EvictionPolicy.PoolKernel;
}

/// <summary>The prefill metric of SPEC 2: for each query head, the (squared) attention probabilities of the window
/// queries summed per key, max-pooled along the key axis (kernel k, stride 1, padding k/2), then summed over the query
/// heads of each GQA group. Window sums are gathered while the prompt's last chunk runs.</summary>
public sealed class ObservationWindowMetric
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
