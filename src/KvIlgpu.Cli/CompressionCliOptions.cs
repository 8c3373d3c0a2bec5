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
        foreach (var o in new Option[] { Policy, Budget, KeepRate, Protected, Sinks, Window, Interval, Metric }) command.Options.Add(o);
    }

    public CompressionOptions? Build(ParseResult r) => Make(r.GetValue(Policy)!, r.GetValue(Budget), r.GetValue(KeepRate),
        r.GetValue(Protected), r.GetValue(Sinks), r.GetValue(Window), r.GetValue(Interval), r.GetValue(Metric));

    /// <summary>Per-request overrides from a batch line (kv_policy, kv_budget, kv_keep_rate, protected_window,
    /// kv_sinks, observation_window, compression_interval, kv_metric) on top of the command line's defaults.</summary>
    public CompressionOptions? Build(ParseResult r, BatchLine line)
    {
        string policy = line.TryString("kv_policy") ?? r.GetValue(Policy)!;
        // A line's own budget replaces the command line's either way: kv_budget drops a default keep rate and back.
        int? budget = line.Has("kv_budget") ? line.TryInt("kv_budget") : line.Has("kv_keep_rate") ? null : r.GetValue(Budget);
        double? keep = line.Has("kv_keep_rate") ? line.TryNumber("kv_keep_rate") : line.Has("kv_budget") ? null : r.GetValue(KeepRate);
        int? window = line.Has("observation_window") ? line.TryInt("observation_window") : r.GetValue(Window);
        string? metric = line.TryString("kv_metric") ?? r.GetValue(Metric);
        return Make(policy, budget, keep, line.Int("protected_window", r.GetValue(Protected)), line.Int("kv_sinks", r.GetValue(Sinks)),
            window,
            line.Int("compression_interval", r.GetValue(Interval)), metric);
    }

    private static CompressionOptions? Make(string policy, int? budget, double? keepRate, int protectedWindow, int sinks, int? window,
        int interval, string? metric)
    {
        var (squared, average) = CompressionOptions.ParseMetric(metric);
        if (policy == "full")
        {
            if (budget != null
                || keepRate != null) throw new InvalidOptionException("MaxCacheTokens",
                    "MaxCacheTokens or KeepRate needs a Policy other than full");
            return null;
        }
        var options = new CompressionOptions(new EvictionBudget(budget, keepRate, protectedWindow, sinks), policy, window, squared,
            Interval: interval,
            Average: average);
        options.Validate();
        return options;
    }
}
