using System.Globalization;
using System.Xml.Linq;
using KvIlgpu.Evaluation;
using KvIlgpu.Tests.Support;

namespace KvIlgpu.Tests.Evaluation;

public class SvgBarChartTests
{
    private static readonly XNamespace Svg = "http://www.w3.org/2000/svg";

    private static double Attr(XElement e, string name) => double.Parse(e.Attribute(name)!.Value, CultureInfo.InvariantCulture);

    /// <summary>Equal to the file's resolution (coordinates are written to three decimals).</summary>
    private static void Near(double expected, double actual) => Assert.InRange(actual, expected - 0.01, expected + 0.01);

    /// <summary>Each bar's height is its value on the axis (bars stand on one baseline, their heights in proportion), a
    /// value that is not finite draws no bar, and the dashed reference line sits where a bar of that value would end.</summary>
    [Fact]
    public void Bars_stand_on_one_baseline_in_proportion_and_the_reference_line_marks_its_value()
    {
        using var dir = new TempDir();
        var series = new Dictionary<string, IReadOnlyList<double>>
        {
            ["decode"] = [1.0, 0.5, double.NaN],
            ["prefill"] = [2.0, 0.25, 1.5],
        };
        SvgBarChart.Write(dir.File("bars.svg"), "t", "ratio", ["f32", "f16", "q4"], series, referenceY: 1);
        var svg = XDocument.Load(dir.File("bars.svg"));
        var bars = svg.Descendants(Svg + "rect").Where(r => r.Element(Svg + "title") != null).ToList();
        Assert.Equal(5, bars.Count);
        var bottoms = bars.Select(b => Attr(b, "y") + Attr(b, "height")).ToList();
        Assert.All(bottoms, b => Near(bottoms[0], b));
        var heights = bars.Select(b => Attr(b, "height")).ToList();
        // In the document's order: f32 decode 1.0, f32 prefill 2.0, f16 decode 0.5, f16 prefill 0.25, q4 prefill 1.5.
        Near(heights[0] * 2, heights[1]);
        Near(heights[0] / 2, heights[2]);
        Near(heights[0] / 4, heights[3]);
        Near(heights[0] * 1.5, heights[4]);
        var dashed = svg.Descendants(Svg + "line").Single(l => l.Attribute("stroke-dasharray") != null);
        Near(Attr(bars[0], "y"), Attr(dashed, "y1"));
    }

    [Fact]
    public void A_series_without_a_value_per_category_is_refused()
    {
        using var dir = new TempDir();
        var series = new Dictionary<string, IReadOnlyList<double>> { ["decode"] = [1.0] };
        var e = Assert.Throws<ArgumentException>(() => SvgBarChart.Write(dir.File("bars.svg"), "t", "y", ["a", "b"], series));
        Assert.Contains("decode", e.Message);
    }
}
