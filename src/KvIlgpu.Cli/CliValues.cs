using System.Globalization;

namespace KvIlgpu.Cli;

/// <summary>Checks of option values the parser cannot make, each error one line naming the flag, made before any model
/// loads or any work starts.</summary>
internal static class CliValues
{
    /// <summary>A non-empty comma-separated list of integers, each at least min.</summary>
    public static List<int> Ints(string text, string flag, int min)
    {
        var items = Items(text, flag);
        return [.. items.Select(v => int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) && n >= min ? n
            : throw new ArgumentException($"{flag}: '{v}' is not an integer of at least {min}"))];
    }

    /// <summary>A non-empty comma-separated list of numbers, each in [min, max].</summary>
    public static List<double> Numbers(string text, string flag, double min, double max)
    {
        var items = Items(text, flag);
        return [.. items.Select(v => double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double x)
            && x >= min && x <= max ? x
            : throw new ArgumentException($"{flag}: '{v}' is not a number in [{min.ToString(CultureInfo.InvariantCulture)}, " +
                $"{max.ToString(CultureInfo.InvariantCulture)}]"))];
    }

    /// <summary>A share in (0, 1], written as a number (0.5) or a fraction P/Q (1/2, 3/8).</summary>
    public static double Share(string text, string flag)
    {
        var parts = text.Trim().Split('/');
        double value = double.NaN;
        if (parts.Length == 1) double.TryParse(parts[0], NumberStyles.Float, CultureInfo.InvariantCulture, out value);
        else if (parts.Length == 2 && double.TryParse(parts[0], NumberStyles.Float, CultureInfo.InvariantCulture, out double p)
            && double.TryParse(parts[1], NumberStyles.Float, CultureInfo.InvariantCulture, out double q) && q != 0)
            value = p / q;
        return value is > 0 and <= 1 ? value
            : throw new ArgumentException($"{flag}: '{text}' is not a share in (0, 1] such as 1/2, 3/8 or 0.25");
    }

    /// <summary>A file that must exist, checked before any model loads.</summary>
    public static string ExistingFile(string path, string flag) =>
        File.Exists(path) ? path : throw new FileNotFoundException($"{flag}: no such file {path}", path);

    /// <summary>A count that must be positive.</summary>
    public static int Positive(int value, string flag) =>
        value > 0 ? value : throw new ArgumentException($"{flag} must be positive (got {value})");

    /// <summary>A folder results will be written to: not an existing file, and writable (it is created if missing).</summary>
    public static void WritableFolder(string path, string flag)
    {
        if (File.Exists(path)) throw new ArgumentException($"{flag} {path} is a file, not a folder");
        try
        {
            Directory.CreateDirectory(path);
            string probe = Path.Combine(path, $".kvilgpu-write-check-{Environment.ProcessId}");
            File.WriteAllText(probe, "");
            File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException)
        {
            throw new ArgumentException($"{flag} {path}: cannot write there ({e.Message})");
        }
    }

    private static string[] Items(string text, string flag)
    {
        var items = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        return items.Length > 0 ? items : throw new ArgumentException($"{flag} is empty");
    }
}
