namespace KvIlgpu.Compression;

/// <summary>Per-request KV cache compression settings (SPEC 2-4). Policy "full" keeps everything; "kvcompress" scores
/// each cached KV by squared attention (prefill observation window, then every decode query) and evicts block-granular
/// chunks ranked across all heads and layers (Rehg, "KV-Compress: Paged KV-Cache Compression with Variable Compression
/// Rates per Attention Head", arXiv 2410.00161); the baselines are listed in <see cref="EvictionPolicies"/>. Metric
/// settings left null take the policy's own defaults.</summary>
/// <param name="Budget">How many KVs each sequence may keep, and which are protected.</param>
/// <param name="Policy">The policy's name (see <see cref="Policies"/>); "full" keeps everything.</param>
/// <param name="ObservationWindow">Last prompt queries whose attention seeds the metric (0: all prompt queries).</param>
/// <param name="Squared">Sum squared probabilities (L2) or plain ones (L1).</param>
/// <param name="PoolKernel">Max-pool width along the key axis of the prefill metric (odd; 1 disables it).</param>
/// <param name="Interval">Compress every N decode steps (and always after prefill and when blocks run out).</param>
/// <param name="Average">Rank by the metric divided by the number of queries that could see each KV (SPEC 2's
/// "average" variant) instead of the plain sum; null: the policy's choice (kvcompress averages).</param>
public sealed record CompressionOptions(
    EvictionBudget Budget,
    string Policy = "kvcompress",
    int? ObservationWindow = null,
    bool? Squared = null,
    int? PoolKernel = null,
    int Interval = 1,
    bool? Average = null)
{
    /// <summary>The names of the registered policies.</summary>
    public static IEnumerable<string> Policies => EvictionPolicies.All.Keys;

    /// <summary>Throws <see cref="InvalidOptionException"/> naming the first property that has a bad value.</summary>
    public void Validate()
    {
        if (!Policies.Contains(Policy))
            throw new InvalidOptionException(nameof(Policy), $"unknown {nameof(Policy)} '{Policy}' (known: {string.Join(", ", Policies)})");
        Budget.Validate();
        if (ObservationWindow < 0) throw new InvalidOptionException(nameof(ObservationWindow),
            $"{nameof(ObservationWindow)} must be >= 0 (got {ObservationWindow})");
        if (PoolKernel is < 1 || PoolKernel % 2 == 0) throw new InvalidOptionException(nameof(PoolKernel),
            $"{nameof(PoolKernel)} must be odd and >= 1 (got {PoolKernel})");
        if (Interval < 1) throw new InvalidOptionException(nameof(Interval), $"{nameof(Interval)} must be >= 1 (got {Interval})");
    }

    /// <summary>An eviction metric by name: squared, plain, squared-average or plain-average; null keeps the policy's.</summary>
    public static (bool? Squared, bool? Average) ParseMetric(string? metric) => metric switch
    {
        null => (null, null),
        "squared" => (true, false),
        "plain" => (false, false),
        "squared-average" => (true, true),
        "plain-average" => (false, true),
        _ => throw new InvalidOptionException("Metric", $"Metric '{metric}' must be squared, plain, squared-average or plain-average"),
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

    /// <summary>Whether these options evict at all (false for the full cache).</summary>
    public bool Evicts => EvictionPolicy.Evicts;
    /// <summary>The registered policy named by <see cref="Policy"/>.</summary>
    internal EvictionPolicy EvictionPolicy => EvictionPolicies.Get(Policy);
    /// <summary>The observation window in force: this request's, else the policy scorer's.</summary>
    internal int EffectiveWindow => ObservationWindow ?? EvictionPolicy.Scorer.ObservationWindow;
    /// <summary>Whether the metric sums squared probabilities: this request's choice, else the policy scorer's.</summary>
    internal bool EffectiveSquared => Squared ?? EvictionPolicy.Scorer.Squared;
    /// <summary>Whether KVs rank by their average rather than their sum: this request's choice, else the policy scorer's.</summary>
    internal bool EffectiveAverage => Average ?? EvictionPolicy.Scorer.Average;
    /// <summary>The prefill metric's pooling width in force: this request's, else the policy scorer's.</summary>
    internal int EffectivePoolKernel => PoolKernel ?? EvictionPolicy.Scorer.PoolKernel;
    /// <summary>Whether decode queries keep adding to the metric (the policy scorer's choice).</summary>
    internal bool AccumulatesDuringDecode => EvictionPolicy.Scorer.AccumulateDuringDecode;
}
