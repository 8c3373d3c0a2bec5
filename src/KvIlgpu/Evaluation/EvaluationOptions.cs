using System.Globalization;
using KvIlgpu.Compression;

namespace KvIlgpu.Evaluation;

/// <summary>What to evaluate. Budgets are "1/N" (a fraction of each sequence's length, per KV head) or a token count.
/// The protected window (ProtectedShare of each budget, a quarter by default; ProtectedWindow tokens when the share is
/// null) and Sinks apply to every policy alike (a policy may protect more sinks of its own).</summary>
public sealed record EvaluationOptions(
    IReadOnlyList<string> Policies,
    IReadOnlyList<string> Budgets,
    int SegmentLength = 512,
    int Segments = 4,
    double PrefixFraction = 0.25,
    int ProtectedWindow = 32,
    int PasskeyTrials = 0,
    IReadOnlyList<int>? PasskeyLengths = null,
    IReadOnlyList<double>? PasskeyDepths = null,
    int Sinks = 0,
    double? ProtectedShare = 0.25,
    IReadOnlyList<ProjectionChoice>? Projections = null,
    IReadOnlyList<double>? DimBudgets = null,
    IReadOnlyList<Cache.KvStorageType>? Storages = null)
{
    /// <summary>Checks every option before anything runs; throws <see cref="InvalidOptionException"/> naming the first
    /// bad one.</summary>
    public void Validate()
    {
        if (Policies.Count == 0) throw new InvalidOptionException(nameof(Policies), $"{nameof(Policies)} is empty");
        foreach (var p in Policies)
        {
            try { CompressionOptions.ForPolicy(p, new EvictionBudget(1)); }
            catch (InvalidOptionException)
            {
                throw new InvalidOptionException(nameof(Policies),
                    $"{nameof(Policies)}: '{p}' is not NAME or NAME:METRIC with NAME one of " +
                    $"{string.Join(", ", CompressionOptions.Policies)} and METRIC squared, plain, squared-average or plain-average");
            }
        }
        if (Budgets.Count == 0) throw new InvalidOptionException(nameof(Budgets), $"{nameof(Budgets)} is empty");
        foreach (var b in Budgets) BudgetTokens(b, SegmentLength);
        int prefix = Math.Max(1, (int)(SegmentLength * PrefixFraction));
        if (!(PrefixFraction is > 0 and < 1) || prefix >= SegmentLength)
            throw new InvalidOptionException(nameof(PrefixFraction),
                $"{nameof(PrefixFraction)}: {PrefixFraction} of a {SegmentLength}-token segment must leave " +
                "a prompt and at least one token to score (a share between 0 and 1, exclusive)");
        if (Segments < 0) throw new InvalidOptionException(nameof(Segments), $"{nameof(Segments)}: {Segments} is negative");
        if (PasskeyTrials < 0) throw new InvalidOptionException(nameof(PasskeyTrials),
            $"{nameof(PasskeyTrials)}: {PasskeyTrials} is negative");
        if (Segments == 0 && PasskeyTrials == 0)
            throw new InvalidOptionException(nameof(Segments),
                $"{nameof(Segments)} 0 runs only the retrieval tasks, so it needs {nameof(PasskeyTrials)} N with N > 0");
        foreach (var n in PasskeyLengths ?? [])
            if (n <= 8) throw new InvalidOptionException(nameof(PasskeyLengths),
                $"{nameof(PasskeyLengths)}: {n} is not a prompt length above 8");
        if (PasskeyDepths?.Any(d => !(d is >= 0 and <= 1)) == true)
            throw new InvalidOptionException(nameof(PasskeyDepths), $"{nameof(PasskeyDepths)} must lie in [0, 1]");
        if (ProtectedWindow < 0) throw new InvalidOptionException(nameof(ProtectedWindow),
            $"{nameof(ProtectedWindow)} must be >= 0 (got {ProtectedWindow})");
        if (ProtectedShare is double share && !(share is >= 0 and <= 1))
            throw new InvalidOptionException(nameof(ProtectedWindow),
                $"{nameof(ProtectedWindow)}: a share of {share} of the budget is not in [0, 1]");
        foreach (var b in DimBudgets ?? [])
            if (!(b is > 0 and <= 1)) throw new InvalidOptionException(nameof(DimBudgets),
                $"{nameof(DimBudgets)}: {b} is not a kept fraction of feature dims in (0, 1]");
        if (DimBudgets is { Count: 0 }) throw new InvalidOptionException(nameof(DimBudgets), $"{nameof(DimBudgets)} is empty");
        if (Storages is { Count: 0 }) throw new InvalidOptionException(nameof(Storages), $"{nameof(Storages)} is empty");
        if (Storages?.Contains(Cache.KvStorageType.Auto) == true && Storages.Count > 1)
            throw new InvalidOptionException(nameof(Storages), $"{nameof(Storages)}: auto cannot be compared with named storage types");
        if (Sinks < 0) throw new InvalidOptionException(nameof(Sinks), $"{nameof(Sinks)} must be >= 0 (got {Sinks})");
    }

    /// <summary>Per-head token budget for a sequence of the given length.</summary>
    public static int BudgetTokens(string budget, int length)
    {
        if (TryParseShare(budget, out var p, out var d) && p == 1) return Math.Max(1, (int)(length / d));
        if (int.TryParse(budget, out var n) && n > 0) return n;
        throw new InvalidOptionException(nameof(Budgets), $"{nameof(Budgets)}: '{budget}' is neither 1/N nor a positive token count");
    }

    /// <summary>The eviction budget of one budget entry for a sequence of the given length.</summary>
    public EvictionBudget Budget(string budget, int length)
    {
        int tokens = BudgetTokens(budget, length);
        return new(tokens, ProtectedWindow: ProtectedShare is double share ? (int)(tokens * share) : ProtectedWindow, Sinks: Sinks);
    }

    /// <summary>Parses a protected window written as a token count ("32") or a share P/Q of each budget ("1/2": half
    /// of every head's budget is the recent window, the rest is chosen by the policy, as H2O splits its cache; "3/4").
    /// </summary>
    public static (int Tokens, double? Share) ParseProtectedWindow(string value)
    {
        if (TryParseShare(value, out var p, out var q)) return (0, p / q);
        if (int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var n)) return (n, null);
        throw new InvalidOptionException(nameof(ProtectedWindow),
            $"{nameof(ProtectedWindow)}: '{value}' is neither a token count nor a share P/Q (at most 1) of the budget");
    }

    /// <summary>Reads a share of the whole written "P/Q" (any numbers with P from 0 to Q), the spelling of budgets ("1/N") and
    /// of protected windows.</summary>
    private static bool TryParseShare(string value, out double p, out double q)
    {
        p = q = 0;
        var parts = value.Split('/');
        return parts.Length == 2
            && double.TryParse(parts[0], NumberStyles.Float, CultureInfo.InvariantCulture, out p)
            && double.TryParse(parts[1], NumberStyles.Float, CultureInfo.InvariantCulture, out q)
            && p >= 0 && q > 0 && p <= q;
    }
}
