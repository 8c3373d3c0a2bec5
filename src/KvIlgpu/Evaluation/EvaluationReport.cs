using System.Globalization;
using System.Text;

namespace KvIlgpu.Evaluation;

/// <summary>What <c>eval</c> writes: a markdown table, a CSV, and plots of KL, passkey and needle accuracy against the
/// compression ratio, one line per policy.</summary>
public static class EvaluationReport
{
    /// <summary>Writes results.md, results.csv and the plots the rows have data for into a folder (created if needed);
    /// returns the files written.</summary>
    public static IReadOnlyList<string> Write(string directory, IReadOnlyList<EvaluationRow> rows)
    {
        Directory.CreateDirectory(directory);
        var written = new List<string>();
        void Save(string name, string text) { File.WriteAllText(Path.Combine(directory, name), text); written.Add(name); }
        void Draw(string name, string title, string yLabel, Func<EvaluationRow, double?> score)
        {
            Plot(Path.Combine(directory, name), rows, title, yLabel, score);
            written.Add(name);
        }
        Save("results.md", Markdown(rows));
        Save("results.csv", Csv(rows));
        if (rows.Any(x => x.Projection != "none" || x.Storage != rows[0].Storage))
        {
            if (rows.Any(x => x.KlToFull != null))
            {
                Frontier(Path.Combine(directory, "kl-vs-kv-bytes.svg"), rows, "KL to the full cache vs KV bytes kept",
                    "mean KL(full || compressed)", r => r.KlToFull);
                written.Add("kl-vs-kv-bytes.svg");
            }
            if (rows.Any(x => x.PasskeyAccuracy != null))
            {
                Frontier(Path.Combine(directory, "passkey-vs-kv-bytes.svg"), rows, "Passkey accuracy vs KV bytes kept", "passkey accuracy",
                    r => r.PasskeyAccuracy);
                written.Add("passkey-vs-kv-bytes.svg");
            }
        }
        if (rows.Any(x => x.KlToFull != null)) Draw("kl-vs-compression.svg", "KL to the full cache vs compression",
            "mean KL(full || compressed)", r => r.KlToFull);
        if (rows.Any(x => x.PasskeyAccuracy != null))
        {
            Draw("passkey-vs-compression.svg", "Passkey accuracy vs compression", "passkey accuracy", x => x.PasskeyAccuracy);
            Draw("needle-vs-compression.svg", "Multi-key needle accuracy vs compression", "needle accuracy", x => x.NeedleAccuracy);
        }
        return written;
    }

    /// <summary>The rows as a markdown table.</summary>
    public static string Markdown(IReadOnlyList<EvaluationRow> rows)
    {
        var sb = new StringBuilder();
        bool storages = rows.Any(r => r.Storage != rows[0].Storage);
        bool features = storages || rows.Any(r => r.Projection != "none");
        sb.AppendLine((storages ? "| KV dtype " : "") + (features ? "| projection | dim budget | KV bytes kept " : "") + "| policy | " +
            "budget | compression | perplexity | KL to full | top-1 agreement | passkey | multi-key needle | mean KV bytes | " +
            "peak KV bytes |");
        sb.AppendLine((storages ? "|---" : "") + (features ? "|---|---|---" : "") + "|---|---|---|---|---|---|---|---|---|---|");
        static string F(IFormattable? v, string format) => v?.ToString(format, CultureInfo.InvariantCulture) ?? "-";
        foreach (var r in rows)
            sb.AppendLine((storages ? $"| {r.Storage} " : "") + (features ? string.Create(CultureInfo.InvariantCulture,
                $"| {r.Projection} | {r.DimBudget:0.###} | {F(r.KvBytesFraction, "P1")} ") : "")
                + string.Create(CultureInfo.InvariantCulture,
                $"| {r.Policy} | {r.Budget} | {r.CompressionRatio:F2}x | {F(r.Perplexity, "F3")} | {F(r.KlToFull, "F4")} | " +
                    $"{F(r.Top1Agreement, "P1")} | {F(r.PasskeyAccuracy, "P0")} | {F(r.NeedleAccuracy, "P0")} | " +
                        $"{F(r.MeanKvBytes, "N0")} | {F(r.PeakKvBytes, "N0")} |"));
        return sb.ToString();
    }

    /// <summary>The rows as CSV, one line per row (kept_per_layer joined with semicolons).</summary>
    public static string Csv(IReadOnlyList<EvaluationRow> rows)
    {
        static string C(IFormattable? v) => v?.ToString(v is double ? "R" : null, CultureInfo.InvariantCulture) ?? "";
        var sb = new StringBuilder("policy,budget,compression_ratio,perplexity,kl_to_full,top1_agreement,passkey_accuracy," +
            "needle_accuracy,mean_kv_bytes,peak_kv_bytes,kept_per_layer,projection,dim_budget,kv_bytes_fraction,kv_dtype\n");
        foreach (var r in rows)
            sb.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"{r.Policy},{r.Budget},{r.CompressionRatio:R},{C(r.Perplexity)},{C(r.KlToFull)},{C(r.Top1Agreement)}," +
                $"{C(r.PasskeyAccuracy)},{C(r.NeedleAccuracy)},{C(r.MeanKvBytes)},{C(r.PeakKvBytes)}," +
                $"{string.Join(";", (r.KeptPerLayer ?? []).Select(k => k.ToString("0.##", CultureInfo.InvariantCulture)))}," +
                $"{r.Projection},{r.DimBudget:R},{C(r.KvBytesFraction)},{r.Storage}"));
        return sb.ToString();
    }


    /// <summary>One score against the KV bytes kept (as full bytes / kept bytes, log2 axis), one line per method: each
    /// eviction policy over its token budgets, each projection over its dim budgets, each composition (policy x projection
    /// at one dim budget) over the token budgets, each in its storage type. The reference (the full cache in the first
    /// storage type, without projection) is left out.</summary>
    public static void Frontier(string path, IReadOnlyList<EvaluationRow> rows, string title, string yLabel,
        Func<EvaluationRow, double?> score) =>
        SvgPlot.Write(path, title, "KV bytes compression (full bytes / kept bytes)", yLabel,
            rows.Where(r => !(r.Policy == "full" && r.Projection == "none" && r.Storage == rows[0].Storage) && score(r) != null
                    && r.KvBytesFraction is > 0)
                .GroupBy(r => r.Method)
                .ToDictionary(g => g.Key, g => (IReadOnlyList<(double X, double Y)>)g.OrderBy(r => 1 / r.KvBytesFraction!.Value)
                    .Select(r => (1 / r.KvBytesFraction!.Value, score(r)!.Value)).ToList()));

    /// <summary>One score against compression ratio, one line per policy (rows without the score are left out).</summary>
    public static void Plot(string path, IReadOnlyList<EvaluationRow> rows, string title, string yLabel, Func<EvaluationRow,
        double?> score) =>
        SvgPlot.Write(path, title, "compression ratio (full KVs / kept KVs)", yLabel,
            rows.Where(r => r.Policy != "full" && r.Projection == "none" && score(r) != null).GroupBy(r => r.Method)
                .ToDictionary(g => g.Key, g => (IReadOnlyList<(double X, double Y)>)g.Select(r => (r.CompressionRatio,
                    score(r)!.Value)).ToList()));
}
