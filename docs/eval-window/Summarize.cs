// Summarises the protected-window sweep: for each window share and each KV-Compress metric, how its KL and passkey
// accuracy compare with the best baseline (StreamingLLM, H2O, SnapKV, PyramidKV, Ada-KV) at every budget. Reads
// DIR/results.csv of each eval run, prints a markdown table, and draws two plots with the library's SvgPlot:
// KV-Compress's KL over the best baseline's, and its passkey accuracy minus the best baseline's, against the nominal
// compression ratio (1/budget), one line per window.
// Usage, from the repository root:
//   dotnet run docs/eval-window/Summarize.cs -- docs/eval-window 1/4=docs/eval 1/2=docs/eval-window/w1_2 ...
#:project ../../src/KvIlgpu/KvIlgpu.csproj
using System.Globalization;
using KvIlgpu.Evaluation;

string[] baselines = ["streamingllm", "h2o", "snapkv", "pyramidkv", "adakv"];
string[] variants = ["kvcompress", "kvcompress:squared-average", "kvcompress:plain-average"];
string[] budgets = ["1/2", "1/4", "1/8", "1/16", "1/32"];
string outDir = args[0];
var klSeries = new Dictionary<string, IReadOnlyList<(double X, double Y)>>();
var passkeySeries = new Dictionary<string, IReadOnlyList<(double X, double Y)>>();

Console.WriteLine($"| window | metric | KL: KV-Compress / best baseline at {string.Join(", ", budgets)} | passkey: KV-Compress - best " +
    $"baseline (points) |");
Console.WriteLine("|---|---|---|---|");
foreach (var run in args.Skip(1))
{
    var (window, dir) = (run[..run.IndexOf('=')], run[(run.IndexOf('=') + 1)..]);
    var lines = File.ReadAllLines(Path.Combine(dir, "results.csv"));
    var header = lines[0].Split(',');
    var rows = lines.Skip(1).Select(l => l.Split(',')).ToDictionary(c => (c[0], c[1]), c => c);
    double Value((string Policy, string Budget) key, string column) =>
        double.Parse(rows[key][Array.IndexOf(header, column)], CultureInfo.InvariantCulture);
    // Runs made before kvcompress's default became the squared average name the SPEC's sum "kvcompress" and the average
    // "kvcompress:squared-average"; later runs name them "kvcompress:squared" and "kvcompress". Read both spellings.
    if (rows.ContainsKey(("kvcompress:squared", "1/2")))
        rows = rows.ToDictionary(kv => (kv.Key.Item1 switch
        {
            "kvcompress:squared" => "kvcompress",
            "kvcompress" => "kvcompress:squared-average",
            var other => other,
        }, kv.Key.Item2), kv => kv.Value);
    foreach (var v in variants.Where(v => rows.ContainsKey((v, "1/2"))))
    {
        var kl = budgets.Select(b => Value((v, b), "kl_to_full") / baselines.Min(p => Value((p, b), "kl_to_full"))).ToList();
        var passkey = budgets.Select(b => 100 * (Value((v, b), "passkey_accuracy") - baselines.Max(p => Value((p, b),
            "passkey_accuracy")))).ToList();
        string metric = v.Contains(':') ? v[(v.IndexOf(':') + 1)..] : "squared (SPEC)";
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| {window} | {metric} | {string.Join(" / ", kl.Select(x => x.ToString("F2", CultureInfo.InvariantCulture)))} | " +
                $"{string.Join(" / ", passkey.Select(x => x.ToString("+0;-0;+0", CultureInfo.InvariantCulture)))} |"));
        if (v != "kvcompress") continue;
        var ratios = budgets.Select(b => double.Parse(b[2..], CultureInfo.InvariantCulture)).ToList();
        klSeries[$"window {window}"] = ratios.Zip(kl).ToList();
        passkeySeries[$"window {window}"] = ratios.Zip(passkey).ToList();
    }
}
const string xLabel = "compression ratio (1 / budget)";
SvgPlot.Write(Path.Combine(outDir, "kl-ratio-vs-window.svg"), "KV-Compress KL / best baseline KL (below the line: ahead)",
    xLabel, "KL ratio", klSeries, referenceY: 1);
SvgPlot.Write(Path.Combine(outDir, "passkey-gap-vs-window.svg"), "KV-Compress passkey - best baseline (above the line: ahead)",
    xLabel, "percentage points", passkeySeries, referenceY: 0);
