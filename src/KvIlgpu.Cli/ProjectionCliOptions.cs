using System.CommandLine;
using KvIlgpu.Projection;

namespace KvIlgpu.Cli;

/// <summary>The MatryoshkaKV options shared by generate, batch and passkey: a projection file and a uniform rank override.
/// </summary>
internal sealed class ProjectionCliOptions
{
    public readonly Option<string?> File = new("--kv-projection")
    {
        Description = "MatryoshkaKV projection file (from kvilgpu kv-projection): every request's keys and values keep the file's ranks",
    };
    public readonly Option<string?> Ranks = new("--kv-ranks")
    {
        Description = "every head at this kept fraction of feature dims instead of the file's ranks, such as 1/2 (needs --kv-projection)",
    };

    public readonly Option<string?> ThinK = new("--think")
    {
        Description = "ThinK: after the prompt, keep this share of each head's key channels (those the last 32 prompt queries " +
            "use most), such as 1/2",
    };

    public void AddTo(Command command)
    {
        command.Options.Add(File);
        command.Options.Add(Ranks);
        command.Options.Add(ThinK);
    }

    /// <summary>ThinK's options from --think (null: none), checked before any model loads.</summary>
    public ThinKOptions? BuildThinK(ParseResult r) =>
        r.GetValue(ThinK) is { } share ? new ThinKOptions(CliValues.Share(share, "--think")) : null;

    /// <summary>Checks the values before any model loads; returns the override share (null: the file's ranks).</summary>
    public double? CheckedShare(ParseResult r)
    {
        if (r.GetValue(File) is { } path) CliValues.ExistingFile(path, "--kv-projection");
        if (r.GetValue(Ranks) is not { } ranks) return null;
        if (r.GetValue(File) == null)
            throw new ArgumentException("--kv-ranks needs --kv-projection (the basis whose leading dims it keeps)");
        return CliValues.Share(ranks, "--kv-ranks");
    }

    /// <summary>The projection the options ask for (null: none), read and checked against itself; the engine checks it
    /// against the model.</summary>
    public KvProjection? Build(ParseResult r)
    {
        double? share = CheckedShare(r);
        if (r.GetValue(File) is not { } path) return null;
        var p = KvProjectionFile.Load(path);
        return share is double s ? p.WithUniformRanks(s) : p;
    }
}
