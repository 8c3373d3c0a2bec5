namespace KvIlgpu.Evaluation;

/// <summary>Line charts as SVG (log2 x axis, one line per series), so results can sit beside their tables as a picture.
/// An optional dashed horizontal line marks a reference value (parity with a baseline, for example).</summary>
public static class SvgPlot
{
    /// <summary>Writes one unnamed series as an SVG line chart.</summary>
    public static void Write(string path, string title, string xLabel, string yLabel, IReadOnlyList<(double X, double Y)> points) =>
        Write(path, title, xLabel, yLabel, new Dictionary<string, IReadOnlyList<(double X, double Y)>> { [""] = points });

    /// <summary>Writes one line per named series as an SVG line chart (log2 x axis), with an optional dashed line at referenceY.</summary>
    public static void Write(string path, string title, string xLabel, string yLabel, IReadOnlyDictionary<string, IReadOnlyList<(double X,
        double Y)>> series,
        double? referenceY = null)
    {
        const int H = 420;
        var canvas = new SvgCanvas(680, H, left: 70, right: 150, top: 40, bottom: 55);
        var all = series.Values.SelectMany(p => p).Where(p => p.X > 0 && double.IsFinite(p.Y)).ToList();
        if (all.Count == 0) all = [(1, 1)];
        double xMin = Math.Log2(all.Min(p => p.X)), xMax = Math.Log2(all.Max(p => p.X));
        double yMin = Math.Min(0, all.Min(p => p.Y)), yMax = Math.Max(all.Max(p => p.Y), referenceY ?? double.MinValue);
        if (yMax <= yMin) yMax = yMin + 1;
        yMax += (yMax - yMin) * 0.1;
        int l = canvas.Left, r = canvas.Right, t = canvas.Top, b = canvas.Bottom;
        string F(double v) => SvgCanvas.F(v);
        double Px(double x) => l + (Math.Log2(x) - xMin) / Math.Max(xMax - xMin, 1e-9) * (r - l);
        double Py(double y) => b - (y - yMin) / (yMax - yMin) * (b - t);
        canvas.Begin(title, yLabel);
        canvas.Axes();
        for (int i = 0; i <= 5; i++)
        {
            double y = yMin + (yMax - yMin) * i / 5;
            canvas.GridLine(Py(y), y);
        }
        if (referenceY is double reference) canvas.ReferenceLine(Py(reference));
        foreach (var x in all.Select(p => p.X).Distinct())
            canvas.Add($"<text x=\"{F(Px(x))}\" y=\"{b + 18}\" text-anchor=\"middle\">{F(x)}</text>");
        canvas.Add($"<text x=\"{(l + r) / 2}\" y=\"{H - 12}\" text-anchor=\"middle\">{SvgCanvas.Escape(xLabel)}</text>");
        int k = 0;
        foreach (var (name, raw) in series)
        {
            var points = raw.Where(p => p.X > 0 && double.IsFinite(p.Y)).OrderBy(p => p.X).ToList();
            string color = SvgCanvas.Colors[k % SvgCanvas.Colors.Length];
            canvas.Add($"<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" " +
                $"points=\"{string.Join(" ", points.Select(p => $"{F(Px(p.X))},{F(Py(p.Y))}"))}\"/>");
            foreach (var p in points) canvas.Add($"<circle cx=\"{F(Px(p.X))}\" cy=\"{F(Py(p.Y))}\" r=\"3.5\" fill=\"{color}\"/>");
            if (name.Length > 0) canvas.LegendEntry(k, color, name, swatchHeight: 4);
            k++;
        }
        canvas.Save(path);
    }
}
