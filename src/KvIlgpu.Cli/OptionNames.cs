using System.Text.RegularExpressions;

namespace KvIlgpu.Cli;

/// <summary>The library names a bad option by its property (<see cref="InvalidOptionException"/>); the command line
/// shows the flag a user typed, and a batch file the field of its line.</summary>
internal static partial class OptionNames
{
    private static readonly Dictionary<string, (string Flag, string? Field)> Names = new()
    {
        ["MaxCacheTokens"] = ("--kv-budget", "kv_budget"),
        ["KeepRate"] = ("--kv-keep-rate", "kv_keep_rate"),
        ["MaxCacheBytes"] = ("--kv-budget-bytes", "kv_budget_bytes"),
        ["KvStorage"] = ("--kv-dtype", null),
        ["ProtectedWindow"] = ("--protected-window", "protected_window"),
        ["Sinks"] = ("--kv-sinks", "kv_sinks"),
        ["Policy"] = ("--kv-policy", "kv_policy"),
        ["ObservationWindow"] = ("--observation-window", "observation_window"),
        ["Interval"] = ("--compression-interval", "compression_interval"),
        ["Metric"] = ("--kv-metric", "kv_metric"),
        ["PoolKernel"] = ("the pooling kernel", null),
        ["Temperature"] = ("--temperature", "temperature"),
        ["TopK"] = ("--top-k", "top_k"),
        ["TopP"] = ("--top-p", "top_p"),
        ["MaxTokens"] = ("--max-tokens", "max_tokens"),
        ["BlockSize"] = ("--block-size", null),
        ["KvMemoryBytes"] = ("--kv-memory", null),
        ["MaxBatchSize"] = ("--max-batch", null),
        ["MaxTokensPerStep"] = ("--max-tokens-per-step", null),
        ["Device"] = ("--device", null),
        ["Budgets"] = ("--budgets", null),
        ["Policies"] = ("--policies", null),
        ["PrefixFraction"] = ("--prompt-share", null),
        ["Segments"] = ("--segments", null),
        ["SegmentLength"] = ("--segment-length", null),
        ["PasskeyTrials"] = ("--passkey-trials", null),
        ["PasskeyLengths"] = ("--task-lengths", null),
        ["KeptShare"] = ("--think", "think"),
        ["KvRanks"] = ("--kv-ranks", null),
        ["DimBudgets"] = ("--dim-budgets", null),
        ["Storages"] = ("--kv-dtypes", null),
    };

    [GeneratedRegex(@"\b[A-Z][A-Za-z]+\b")]
    private static partial Regex Word();

    /// <summary>The request field a library property is set by (kv_budget for MaxCacheTokens), or null.</summary>
    public static string? Field(string property) => Names.TryGetValue(property, out var n) ? n.Field : null;

    /// <summary>The message with every property the library names replaced by its flag (or, for a batch line, by
    /// its field where it has one).</summary>
    public static string ForUser(string message, bool batchLine = false) =>
        Word().Replace(message, m => Names.TryGetValue(m.Value, out var n) ? (batchLine ? n.Field ?? n.Flag : n.Flag) : m.Value);
}
