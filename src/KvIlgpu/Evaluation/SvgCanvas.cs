using System.Globalization;
using System.Text;

namespace KvIlgpu.Evaluation;

/// <summary>What <see cref="SvgPlot"/> and <see cref="SvgBarChart"/> draw alike: a white page with a title, axes, a
/// labelled horizontal grid line per tick, a dashed reference line, legend entries, and the file written out. The plot
/// area runs from x = Left to x = Right and from y = Top down to y = Bottom.</summary>
internal sealed class SvgCanvas(int width, int height, int left, int right, int top, int bottom)
{
    public static readonly string[] Colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];

    private readonly StringBuilder _sb = new();

    public int Left { get; } = left;
    public int Right { get; } = width - right;
    public int Top { get; } = top;
    public int Bottom { get; } = height - bottom;

    /// <summary>A number as the charts write it: at most three decimals, invariant culture.</summary>
    public static string F(double v) => v.ToString("0.###", CultureInfo.InvariantCulture);

    public static string Escape(string s) => s.Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;");

    /// <summary>Appends a raw SVG element (its fractional numbers written with <see cref="F"/>).</summary>
    public void Add(string element) => _sb.AppendLine(element);

    /// <summary>The page, its title over the plot area, and the y axis's label.</summary>
    public void Begin(string title, string yLabel)
    {
        Add($"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" " +
            "font-size=\"12\">");
        Add($"<rect width=\"{width}\" height=\"{height}\" fill=\"white\"/>");
        Add($"<text x=\"{(Right + Left) / 2}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{Escape(title)}</text>");
        Add($"<text transform=\"translate(18,{(Top + Bottom) / 2}) rotate(-90)\" text-anchor=\"middle\">{Escape(yLabel)}</text>");
    }

    /// <summary>The x and y axes along the plot area's bottom and left edges.</summary>
    public void Axes() => Add($"<line x1=\"{Left}\" y1=\"{Bottom}\" x2=\"{Right}\" y2=\"{Bottom}\" stroke=\"black\"/><line x1=\"{Left}\" " +
        $"y1=\"{Top}\" x2=\"{Left}\" y2=\"{Bottom}\" stroke=\"black\"/>");

    /// <summary>A light grid line across the plot area at height py, labelled with value at its left.</summary>
    public void GridLine(double py, double value) => Add($"<line x1=\"{Left - 4}\" y1=\"{F(py)}\" x2=\"{Right}\" y2=\"{F(py)}\" " +
        $"stroke=\"#ddd\"/><text x=\"{Left - 8}\" y=\"{F(py + 4)}\" text-anchor=\"end\">{F(value)}</text>");

    /// <summary>A dashed line across the plot area at height py (a reference value).</summary>
    public void ReferenceLine(double py) =>
        Add($"<line x1=\"{Left}\" y1=\"{F(py)}\" x2=\"{Right}\" y2=\"{F(py)}\" stroke=\"black\" stroke-dasharray=\"5,4\"/>");

    /// <summary>Legend entry number index, right of the plot area: a swatch of the given height, then the name.</summary>
    public void LegendEntry(int index, string color, string name, int swatchHeight) =>
        Add($"<rect x=\"{Right + 12}\" y=\"{Top + 18 * index - 9}\" width=\"12\" height=\"{swatchHeight}\" fill=\"{color}\"/><text " +
            $"x=\"{Right + 30}\" y=\"{Top + 18 * index - 9 + Math.Max(6, swatchHeight)}\">{Escape(name)}</text>");

    /// <summary>Closes the document and writes it to path (its folder made if need be).</summary>
    public void Save(string path)
    {
        Add("</svg>");
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        File.WriteAllText(path, _sb.ToString());
    }
}
