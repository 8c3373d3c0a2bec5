using System.Globalization;
using System.Text;

namespace KvIlgpu.Evaluation;

/// <summary>Line charts as SVG (log2 x axis, one line per series), so results can sit beside their tables as a picture.
/// An optional dashed horizontal line marks a reference value (parity with a baseline, for example).</summary>
public static class SvgPlot
{
    private static readonly string[] Colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];

    /// <summary>Writes one unnamed series as an SVG line chart.</summary>
    public static void Write(string path, string title, string xLabel, string yLabel, IReadOnlyList<(double X, double Y)> points) =>
        Write(path, title, xLabel, yLabel, new Dictionary<string, IReadOnlyList<(double X, double Y)>> { [""] = points });

    /// <summary>Writes one line per named series as an SVG line chart (log2 x axis), with an optional dashed line at referenceY.</summary>
    public static void Write(string path, string title, string xLabel, string yLabel, IReadOnlyDictionary<string, IReadOnlyList<(double X,
        double Y)>> series,
        double? referenceY = null)
    {
        const int W = 680, H = 420, L = 70, R = 150, T = 40, B = 55;
        var all = series.Values.SelectMany(p => p).Where(p => p.X > 0 && double.IsFinite(p.Y)).ToList();
        if (all.Count == 0) all = [(1, 1)];
        double xMin = Math.Log2(all.Min(p => p.X)), xMax = Math.Log2(all.Max(p => p.X));
        double yMin = Math.Min(0, all.Min(p => p.Y)), yMax = Math.Max(all.Max(p => p.Y), referenceY ?? double.MinValue);
        if (yMax <= yMin) yMax = yMin + 1;
        yMax += (yMax - yMin) * 0.1;
        string F(double v) => v.ToString("0.###", CultureInfo.InvariantCulture);
        double Px(double x) => L + (Math.Log2(x) - xMin) / Math.Max(xMax - xMin, 1e-9) * (W - L - R);
        double Py(double y) => H - B - (y - yMin) / (yMax - yMin) * (H - T - B);
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture,
            $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">");
        sb.AppendLine(CultureInfo.InvariantCulture, $"<rect width=\"{W}\" height=\"{H}\" fill=\"white\"/>");
        sb.AppendLine(CultureInfo.InvariantCulture,
            $"<text x=\"{(W - R + L) / 2}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{Escape(title)}</text>");
        sb.AppendLine(CultureInfo.InvariantCulture,
            $"<line x1=\"{L}\" y1=\"{H - B}\" x2=\"{W - R}\" y2=\"{H - B}\" stroke=\"black\"/><line x1=\"{L}\" y1=\"{T}\" x2=\"{L}\" " +
                $"y2=\"{H - B}\" stroke=\"black\"/>");
        for (int i = 0; i <= 5; i++)
        {
            double y = yMin + (yMax - yMin) * i / 5;
            sb.AppendLine(CultureInfo.InvariantCulture,
                $"<line x1=\"{L - 4}\" y1=\"{F(Py(y))}\" x2=\"{W - R}\" y2=\"{F(Py(y))}\" stroke=\"#ddd\"/><text x=\"{L - 8}\" " +
                    $"y=\"{F(Py(y) + 4)}\" text-anchor=\"end\">{F(y)}</text>");
        }
        if (referenceY is double r)
            sb.AppendLine(CultureInfo.InvariantCulture,
                $"<line x1=\"{L}\" y1=\"{F(Py(r))}\" x2=\"{W - R}\" y2=\"{F(Py(r))}\" stroke=\"black\" stroke-dasharray=\"5,4\"/>");
        foreach (var x in all.Select(p => p.X).Distinct())
            sb.AppendLine(CultureInfo.InvariantCulture, $"<text x=\"{F(Px(x))}\" y=\"{H - B + 18}\" text-anchor=\"middle\">{F(x)}</text>");
        sb.AppendLine(CultureInfo.InvariantCulture,
            $"<text x=\"{(L + W - R) / 2}\" y=\"{H - 12}\" text-anchor=\"middle\">{Escape(xLabel)}</text>");
        sb.AppendLine(CultureInfo.InvariantCulture,
            $"<text transform=\"translate(18,{(T + H - B) / 2}) rotate(-90)\" text-anchor=\"middle\">{Escape(yLabel)}</text>");
        int k = 0;
        foreach (var (name, raw) in series)
        {
            var points = raw.Where(p => p.X > 0 && double.IsFinite(p.Y)).OrderBy(p => p.X).ToList();
            string color = Colors[k % Colors.Length];
            sb.AppendLine(CultureInfo.InvariantCulture,
                $"<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" " +
                    $"points=\"{string.Join(" ", points.Select(p => $"{F(Px(p.X))},{F(Py(p.Y))}"))}\"/>");
            foreach (var p in points) sb.AppendLine(CultureInfo.InvariantCulture,
                $"<circle cx=\"{F(Px(p.X))}\" cy=\"{F(Py(p.Y))}\" r=\"3.5\" fill=\"{color}\"/>");
            if (name.Length > 0)
                sb.AppendLine(CultureInfo.InvariantCulture,
                    $"<rect x=\"{W - R + 12}\" y=\"{T + 18 * k - 9}\" width=\"12\" height=\"4\" fill=\"{color}\"/><text " +
                        $"x=\"{W - R + 30}\" y=\"{T + 18 * k - 3}\">{Escape(name)}</text>");
            k++;
        }
        sb.AppendLine("</svg>");
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        File.WriteAllText(path, sb.ToString());
    }

    private static string Escape(string s) => s.Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;");
}
