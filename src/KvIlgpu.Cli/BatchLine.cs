using System.Text.Json;

namespace KvIlgpu.Cli;

/// <summary>One line of a batch file, read field by field: a field of the wrong JSON type, or one the file format does
/// not have, is an error that names the line and the field (<see cref="BatchLineException"/>), so that line alone fails.
/// </summary>
internal sealed class BatchLine
{
    /// <summary>Every field a batch line may carry.</summary>
    public static readonly IReadOnlySet<string> Fields = new HashSet<string>
    {
        "id", "prompt", "prompt_ids", "max_tokens", "temperature", "top_p", "top_k", "seed", "think", "kv_policy", "kv_budget",
        "kv_keep_rate", "kv_budget_bytes", "protected_window", "kv_sinks", "observation_window", "compression_interval", "kv_metric",
    };

    private readonly JsonElement _element;

    private BatchLine(string where, int number, JsonElement element)
    {
        Where = where;
        Number = number;
        _element = element;
    }

    /// <summary>Where the line is, as "file:line".</summary>
    public string Where { get; }

    /// <summary>The line's number in the file (from 1).</summary>
    public int Number { get; }

    /// <summary>Parses a line: it must be one JSON object whose fields are all known.</summary>
    public static BatchLine Parse(string where, int number, string text)
    {
        JsonElement element;
        try
        {
            using var document = JsonDocument.Parse(text);
            element = document.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw new BatchLineException(where, null, $"not valid JSON ({e.Message})");
        }
        if (element.ValueKind != JsonValueKind.Object) throw new BatchLineException(where, null,
            $"a line is one JSON object, not {Kind(element)}");
        foreach (var p in element.EnumerateObject())
            if (!Fields.Contains(p.Name))
                throw new BatchLineException(where, p.Name, $"unknown field (known: {string.Join(", ", Fields)})");
        return new BatchLine(where, number, element);
    }

    /// <summary>A JSON object read with a batch line's getters and errors, without the check that every field is a batch
    /// field (an HTTP request body carries fields of its own besides the batch line's).</summary>
    public static BatchLine FromObject(string where, JsonElement element) => element.ValueKind == JsonValueKind.Object
        ? new BatchLine(where, 0, element)
        : throw new BatchLineException(where, null, $"the body is one JSON object, not {Kind(element)}");

    /// <summary>Whether the line has the field.</summary>
    public bool Has(string field) => _element.TryGetProperty(field, out _);

    /// <summary>The request's id: the field as written (a string, or any other JSON value as its text), else line-N.</summary>
    public string Id => _element.TryGetProperty("id", out var id)
        ? id.ValueKind == JsonValueKind.String ? id.GetString()! : id.GetRawText()
        : $"line-{Number}";

    /// <summary>An integer field, or the fallback when the line has none.</summary>
    public int Int(string field, int fallback) => TryInt(field) ?? fallback;

    /// <summary>An integer field, or null.</summary>
    public int? TryInt(string field) =>
        !_element.TryGetProperty(field, out var v) ? null
        : v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int n) ? n
        : throw Wrong(field, "an integer", v);

    /// <summary>A 64-bit integer field, or null.</summary>
    public long? TryLong(string field) =>
        !_element.TryGetProperty(field, out var v) ? null
        : v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out long n) ? n
        : throw Wrong(field, "an integer", v);

    /// <summary>A number field, or null.</summary>
    public double? TryNumber(string field) =>
        !_element.TryGetProperty(field, out var v) ? null
        : v.ValueKind == JsonValueKind.Number ? v.GetDouble()
        : throw Wrong(field, "a number", v);

    /// <summary>A string field, or null.</summary>
    public string? TryString(string field) =>
        !_element.TryGetProperty(field, out var v) ? null
        : v.ValueKind == JsonValueKind.String ? v.GetString()
        : throw Wrong(field, "a string", v);

    /// <summary>An array of integers, or null.</summary>
    public int[]? TryInts(string field)
    {
        if (!_element.TryGetProperty(field, out var v)) return null;
        if (v.ValueKind != JsonValueKind.Array) throw Wrong(field, "an array of token ids", v);
        return [.. v.EnumerateArray().Select(x => x.ValueKind == JsonValueKind.Number && x.TryGetInt32(out int n) ? n
            : throw Wrong(field, "an array of token ids", x))];
    }

    /// <summary>An error about one field of this line.</summary>
    public BatchLineException Error(string? field, string message) => new(Where, field, message);

    private BatchLineException Wrong(string field, string expected, JsonElement got) => new(Where, field,
        $"expected {expected}, got {Kind(got)}");

    private static string Kind(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.String => $"the string {e.GetRawText()}",
        JsonValueKind.Number => $"the number {e.GetRawText()}",
        JsonValueKind.Array => "an array",
        JsonValueKind.Object => "an object",
        JsonValueKind.True or JsonValueKind.False => e.GetRawText(),
        _ => "null",
    };
}

/// <summary>A batch line that cannot run, with where it is and which field is wrong.</summary>
internal sealed class BatchLineException(string where, string? field, string message)
    : Exception(field == null ? $"{where}: {message}" : $"{where}: {field}: {message}")
{
    /// <summary>The field at fault, when one is.</summary>
    public string? Field { get; } = field;
}
