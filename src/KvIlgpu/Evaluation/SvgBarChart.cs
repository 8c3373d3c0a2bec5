using System.Globalization;
using System.Text;

namespace KvIlgpu.Evaluation;

/// <summary>Grouped bar charts as SVG: one group of bars per category (a weight type, say), one bar per series in each
/// group, on a linear y axis from zero, with an optional dashed horizontal line at a reference value (parity with a
/// baseline). For results whose x axis is a set of names, where <see cref="SvgPlot"/>'s lines would need numbers.</summary>
public static class SvgBarChart
{
    private static readonly string[] Colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];

    /// <summary>Writes the chart: series maps each series' name to one value per category, in the categories' order (a
    /// value that is not finite draws no bar).</summary>
    public static void Write(string path, string title, string yLabel, IReadOnlyList<string> categories,
        IReadOnlyDictionary<string, IReadOnlyList<double>> series, double? referenceY = null)
    {
        foreach (var (name, values) in series)
            if (values.Count != categories.Count)
                throw new ArgumentException($"series '{name}' has {values.Count} values for {categories.Count} categories", nameof(series));
        const int H = 420, L = 70, R = 150, T = 40, B = 70;
        int groupWidth = Math.Max(60, 24 * series.Count + 24), w = L + R + groupWidth * Math.Max(1, categories.Count);
        var finite = series.Values.SelectMany(v => v).Where(double.IsFinite).ToList();
        double yMax = Math.Max(finite.Count > 0 ? finite.Max() : 1, referenceY ?? 0);
        if (yMax <= 0) yMax = 1;
        // Ticks at a round step (1, 2, 2.5 or 5 times a power of ten), about five of them, the top one above every bar.
        double raw = yMax * 1.1 / 5, magnitude = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        double step = new[] { 1, 2, 2.5, 5, 10 }.Select(m => m * magnitude).First(v => v >= raw);
        int ticks = (int)Math.Ceiling(yMax * 1.1 / step);
        yMax = ticks * step;
        string F(double v) => v.ToString("0.###", CultureInfo.InvariantCulture);
        double Py(double y) => H - B - y / yMax * (H - T - B);
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture,
            $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">");
        sb.AppendLine(CultureInfo.InvariantCulture, $"<rect width=\"{w}\" height=\"{H}\" fill=\"white\"/>");
        sb.AppendLine(CultureInfo.InvariantCulture,
            $"<text x=\"{(w - R + L) / 2}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{Escape(title)}</text>");
        for (int i = 0; i <= ticks; i++)
        {
            double y = step * i;
            sb.AppendLine(CultureInfo.InvariantCulture,
                $"<line x1=\"{L - 4}\" y1=\"{F(Py(y))}\" x2=\"{w - R}\" y2=\"{F(Py(y))}\" stroke=\"#ddd\"/><text x=\"{L - 8}\" " +
                    $"y=\"{F(Py(y) + 4)}\" text-anchor=\"end\">{F(y)}</text>");
        }
        sb.AppendLine(CultureInfo.InvariantCulture,
            $"<text transform=\"translate(18,{(T + H - B) / 2}) rotate(-90)\" text-anchor=\"middle\">{Escape(yLabel)}</text>");
        int barWidth = (groupWidth - 24) / Math.Max(1, series.Count);
        for (int c = 0; c < categories.Count; c++)
        {
            int x0 = L + c * groupWidth + 12, k = 0;
            foreach (var values in series.Values)
            {
                double v = values[c];
                if (double.IsFinite(v) && v > 0)
                    sb.AppendLine(CultureInfo.InvariantCulture,
                        $"<rect x=\"{x0 + k * barWidth}\" y=\"{F(Py(v))}\" width=\"{barWidth - 2}\" height=\"{F(Py(0) - Py(v))}\" " +
                            $"fill=\"{Colors[k % Colors.Length]}\"><title>{Escape(categories[c])}: {F(v)}</title></rect>");
                k++;
            }
            sb.AppendLine(CultureInfo.InvariantCulture,
                $"<text x=\"{x0 + (groupWidth - 24) / 2}\" y=\"{H - B + 18}\" text-anchor=\"middle\">{Escape(categories[c])}</text>");
        }
        sb.AppendLine(CultureInfo.InvariantCulture,
            $"<line x1=\"{L}\" y1=\"{H - B}\" x2=\"{w - R}\" y2=\"{H - B}\" stroke=\"black\"/><line x1=\"{L}\" y1=\"{T}\" x2=\"{L}\" " +
                $"y2=\"{H - B}\" stroke=\"black\"/>");
        if (referenceY is double r)
            sb.AppendLine(CultureInfo.InvariantCulture,
                $"<line x1=\"{L}\" y1=\"{F(Py(r))}\" x2=\"{w - R}\" y2=\"{F(Py(r))}\" stroke=\"black\" stroke-dasharray=\"5,4\"/>");
        int s = 0;
        foreach (var name in series.Keys)
        {
            sb.AppendLine(CultureInfo.InvariantCulture,
                $"<rect x=\"{w - R + 12}\" y=\"{T + 18 * s - 9}\" width=\"12\" height=\"10\" fill=\"{Colors[s % Colors.Length]}\"/><text " +
                    $"x=\"{w - R + 30}\" y=\"{T + 18 * s}\">{Escape(name)}</text>");
            s++;
        }
        sb.AppendLine("</svg>");
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        File.WriteAllText(path, sb.ToString());
    }

    private static string Escape(string s) => s.Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;");
}
