using System.CommandLine;
using KvIlgpu.Compression;

namespace KvIlgpu.Cli;

/// <summary>The KV compression options shared by generate and batch.</summary>
internal sealed class CompressionCliOptions
{
    public readonly Option<string> Policy = new("--kv-policy")
    {
        Description = $"one of {string.Join(", ", CompressionOptions.Policies)}",
        DefaultValueFactory = _ => "full",
    };
    public readonly Option<int?> Budget = new("--kv-budget") { Description = "most cached tokens per KV head on average" };
    public readonly Option<long?> BudgetBytes = new("--kv-budget-bytes")
    {
        Description = "most bytes of KV blocks per sequence (instead of --kv-budget; counts the storage type and projection ranks)",
    };
    public readonly Option<double?> KeepRate = new("--kv-keep-rate")
    {
        Description = "fraction of unprotected KVs to keep (instead of --kv-budget)",
    };
    public readonly Option<int> Protected = new("--protected-window")
    {
        Description = "most recent tokens never evicted",
        DefaultValueFactory = _ => 32
    };
    public readonly Option<int> Sinks = new("--kv-sinks")
    {
        Description = "first tokens of the sequence never evicted (attention sinks; StreamingLLM keeps at least 4)",
        DefaultValueFactory = _ => 0,
    };
    public readonly Option<int?> Window = new("--observation-window")
    {
        Description = "last prompt queries that seed the metric (0 = all; default: the policy's)",
    };
    public readonly Option<int> Interval = new("--compression-interval")
    {
        Description = "compress every N decode steps",
        DefaultValueFactory = _ => 1,
    };
    public readonly Option<string?> Metric = new("--kv-metric")
    {
        Description = "eviction metric: squared, plain, squared-average or plain-average (default: the policy's)",
    };

    public void AddTo(Command command)
    {
        foreach (var o in new Option[] { Policy, Budget, BudgetBytes, KeepRate, Protected, Sinks, Window, Interval, Metric })
            command.Options.Add(o);
    }

    public CompressionOptions? Build(ParseResult r) => Make(r.GetValue(Policy)!, r.GetValue(Budget), r.GetValue(BudgetBytes),
        r.GetValue(KeepRate), r.GetValue(Protected), r.GetValue(Sinks), r.GetValue(Window), r.GetValue(Interval), r.GetValue(Metric));

    /// <summary>Per-request overrides from a batch line (kv_policy, kv_budget, kv_keep_rate, protected_window,
    /// kv_sinks, observation_window, compression_interval, kv_metric) on top of the command line's defaults.</summary>
    public CompressionOptions? Build(ParseResult r, BatchLine line)
    {
        string policy = line.TryString("kv_policy") ?? r.GetValue(Policy)!;
        // A line's own budget replaces the command line's, whichever kind each gives: kv_budget drops a default keep rate
        // or bytes budget, and so on.
        bool own = line.Has("kv_budget") || line.Has("kv_keep_rate") || line.Has("kv_budget_bytes");
        int? budget = own ? line.TryInt("kv_budget") : r.GetValue(Budget);
        long? bytes = own ? line.TryLong("kv_budget_bytes") : r.GetValue(BudgetBytes);
        double? keep = own ? line.TryNumber("kv_keep_rate") : r.GetValue(KeepRate);
        int? window = line.Has("observation_window") ? line.TryInt("observation_window") : r.GetValue(Window);
        string? metric = line.TryString("kv_metric") ?? r.GetValue(Metric);
        return Make(policy, budget, bytes, keep, line.Int("protected_window", r.GetValue(Protected)),
            line.Int("kv_sinks", r.GetValue(Sinks)),
            window,
            line.Int("compression_interval", r.GetValue(Interval)), metric);
    }

    private static CompressionOptions? Make(string policy, int? budget, long? bytes, double? keepRate, int protectedWindow, int sinks,
        int? window, int interval, string? metric)
    {
        var (squared, average) = CompressionOptions.ParseMetric(metric);
        if (policy == "full")
        {
            if (bytes != null) throw new InvalidOptionException("MaxCacheBytes", "MaxCacheBytes needs a Policy other than full");
            if (budget != null
                || keepRate != null) throw new InvalidOptionException("MaxCacheTokens",
                    "MaxCacheTokens or KeepRate needs a Policy other than full");
            return null;
        }
        var options = new CompressionOptions(new EvictionBudget(budget, keepRate, protectedWindow, sinks, bytes), policy, window,
            squared,
            Interval: interval,
            Average: average);
        options.Validate();
        return options;
    }
}
