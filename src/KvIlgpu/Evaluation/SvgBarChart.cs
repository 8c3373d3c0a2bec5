namespace KvIlgpu.Evaluation;

/// <summary>Grouped bar charts as SVG: one group of bars per category (a weight type, say), one bar per series in each
/// group, on a linear y axis from zero, with an optional dashed horizontal line at a reference value (parity with a
/// baseline). For results whose x axis is a set of names, where <see cref="SvgPlot"/>'s lines would need numbers.</summary>
public static class SvgBarChart
{
    /// <summary>Writes the chart: series maps each series' name to one value per category, in the categories' order (a
    /// value that is not finite draws no bar).</summary>
    public static void Write(string path, string title, string yLabel, IReadOnlyList<string> categories,
        IReadOnlyDictionary<string, IReadOnlyList<double>> series, double? referenceY = null)
    {
        foreach (var (name, values) in series)
            if (values.Count != categories.Count)
                throw new ArgumentException($"series '{name}' has {values.Count} values for {categories.Count} categories", nameof(series));
        int groupWidth = Math.Max(60, 24 * series.Count + 24), barWidth = (groupWidth - 24) / Math.Max(1, series.Count);
        var canvas = new SvgCanvas(70 + 150 + groupWidth * Math.Max(1, categories.Count), 420, left: 70, right: 150, top: 40,
            bottom: 70);
        var finite = series.Values.SelectMany(v => v).Where(double.IsFinite).ToList();
        double yMax = Math.Max(finite.Count > 0 ? finite.Max() : 1, referenceY ?? 0);
        if (yMax <= 0) yMax = 1;
        // Ticks at a round step (1, 2, 2.5 or 5 times a power of ten), about five of them, the top one above every bar.
        double raw = yMax * 1.1 / 5, magnitude = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        double step = new[] { 1, 2, 2.5, 5, 10 }.Select(m => m * magnitude).First(v => v >= raw);
        int ticks = (int)Math.Ceiling(yMax * 1.1 / step);
        yMax = ticks * step;
        int l = canvas.Left, t = canvas.Top, b = canvas.Bottom;
        string F(double v) => SvgCanvas.F(v);
        double Py(double y) => b - y / yMax * (b - t);
        canvas.Begin(title, yLabel);
        for (int i = 0; i <= ticks; i++) canvas.GridLine(Py(step * i), step * i);
        for (int c = 0; c < categories.Count; c++)
        {
            int x0 = l + c * groupWidth + 12, k = 0;
            foreach (var values in series.Values)
            {
                double v = values[c];
                if (double.IsFinite(v) && v > 0)
                    canvas.Add($"<rect x=\"{x0 + k * barWidth}\" y=\"{F(Py(v))}\" width=\"{barWidth - 2}\" height=\"{F(Py(0) - Py(v))}\" " +
                        $"fill=\"{SvgCanvas.Colors[k % SvgCanvas.Colors.Length]}\"><title>{SvgCanvas.Escape(categories[c])}: " +
                        $"{F(v)}</title></rect>");
                k++;
            }
            canvas.Add($"<text x=\"{x0 + (groupWidth - 24) / 2}\" y=\"{b + 18}\" text-anchor=\"middle\">" +
                $"{SvgCanvas.Escape(categories[c])}</text>");
        }
        canvas.Axes();
        if (referenceY is double reference) canvas.ReferenceLine(Py(reference));
        int s = 0;
        foreach (var name in series.Keys)
        {
            canvas.LegendEntry(s, SvgCanvas.Colors[s % SvgCanvas.Colors.Length], name, swatchHeight: 10);
            s++;
        }
        canvas.Save(path);
    }
}
