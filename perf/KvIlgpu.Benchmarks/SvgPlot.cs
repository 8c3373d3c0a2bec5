using System.Globalization;
using System.Text;

namespace KvIlgpu.Benchmarks;

/// <summary>A minimal line chart as SVG (log2 x axis), so benchmark results can sit beside their tables as a picture.</summary>
public static class SvgPlot
{
    public static void Write(string path, string title, string xLabel, string yLabel, IReadOnlyList<(double X, double Y)> points)
    {
        const int W = 640, H = 400, L = 70, R = 20, T = 40, B = 55;
        double xMin = Math.Log2(points.Min(p => p.X)), xMax = Math.Log2(points.Max(p => p.X));
        double yMax = points.Max(p => p.Y) * 1.1;
        string F(double v) => v.ToString("0.#", CultureInfo.InvariantCulture);
        double Px(double x) => L + (Math.Log2(x) - xMin) / Math.Max(xMax - xMin, 1e-9) * (W - L - R);
        double Py(double y) => H - B - y / yMax * (H - T - B);
        var sb = new StringBuilder();
        sb.AppendLine($"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">");
        sb.AppendLine($"<rect width=\"{W}\" height=\"{H}\" fill=\"white\"/>");
        sb.AppendLine($"<text x=\"{W / 2}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{title}</text>");
        sb.AppendLine($"<line x1=\"{L}\" y1=\"{H - B}\" x2=\"{W - R}\" y2=\"{H - B}\" stroke=\"black\"/><line x1=\"{L}\" y1=\"{T}\" x2=\"{L}\" y2=\"{H - B}\" stroke=\"black\"/>");
        for (int i = 0; i <= 5; i++)
        {
            double y = yMax * i / 5;
            sb.AppendLine($"<line x1=\"{L - 4}\" y1=\"{F(Py(y))}\" x2=\"{W - R}\" y2=\"{F(Py(y))}\" stroke=\"#ddd\"/><text x=\"{L - 8}\" y=\"{F(Py(y) + 4)}\" text-anchor=\"end\">{F(y)}</text>");
        }
        foreach (var p in points)
            sb.AppendLine($"<text x=\"{F(Px(p.X))}\" y=\"{H - B + 18}\" text-anchor=\"middle\">{F(p.X)}</text>");
        sb.AppendLine($"<text x=\"{(L + W - R) / 2}\" y=\"{H - 12}\" text-anchor=\"middle\">{xLabel}</text>");
        sb.AppendLine($"<text transform=\"translate(18,{(T + H - B) / 2}) rotate(-90)\" text-anchor=\"middle\">{yLabel}</text>");
        sb.AppendLine($"<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"{string.Join(" ", points.Select(p => $"{F(Px(p.X))},{F(Py(p.Y))}"))}\"/>");
        foreach (var p in points) sb.AppendLine($"<circle cx=\"{F(Px(p.X))}\" cy=\"{F(Py(p.Y))}\" r=\"4\" fill=\"#1f77b4\"/>");
        sb.AppendLine("</svg>");
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        File.WriteAllText(path, sb.ToString());
    }
}
