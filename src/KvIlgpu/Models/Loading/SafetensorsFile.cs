using System.Text.Json;

namespace KvIlgpu.Models.Loading;

/// <summary>Reads the safetensors format: an 8-byte little-endian header length, a JSON header mapping
/// tensor names to dtype, shape and data_offsets, then the raw data (offsets relative to its start).</summary>
internal sealed class SafetensorsFile
{
    public string Path { get; }
    public IReadOnlyDictionary<string, SafetensorsEntry> Entries { get; }
    public long DataStart { get; }

    private SafetensorsFile(string path, Dictionary<string, SafetensorsEntry> entries, long dataStart)
    {
        Path = path; Entries = entries; DataStart = dataStart;
    }

    public static SafetensorsFile Open(string path)
    {
        using var r = new TensorFileReader(path, null);
        long headerLen = r.ReadInt64("safetensors header length");
        if (headerLen <= 0 || headerLen > 100_000_000)
            throw new InvalidModelException(path, $"not a safetensors file: header length {headerLen}");
        var json = r.ReadBytes(headerLen, "safetensors header");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(json); }
        catch (JsonException e) { throw new InvalidModelException(path, "safetensors header is not valid JSON", e); }
        var entries = new Dictionary<string, SafetensorsEntry>();
        long dataLen = r.Length - 8 - headerLen;
        foreach (var p in doc.RootElement.EnumerateObject())
        {
            if (p.Name == "__metadata__") continue;
            var dtype = p.Value.GetProperty("dtype").GetString() ?? "";
            var shape = p.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            var offs = p.Value.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            if (offs.Length != 2 || offs[0] < 0 || offs[1] < offs[0])
                throw new InvalidModelException(path, $"tensor {p.Name}: bad data_offsets");
            if (offs[1] > dataLen)
                throw new InvalidModelException(path,
                    $"truncated: tensor {p.Name} ends at data offset {offs[1]}, but the file holds only {dataLen} bytes of data");
            entries[p.Name] = new SafetensorsEntry(p.Name, dtype, shape, offs[0], offs[1]);
        }
        return new SafetensorsFile(path, entries, 8 + headerLen);
    }

    /// <summary>Reads a tensor as a [rows, cols] weight (a 1-D tensor is one row), keeping f16/bf16 as stored.</summary>
    public WeightTensor Read(string name, IProgress<LoadProgress>? progress, long progressBase, long progressTotal)
    {
        var e = Entries[name];
        long count = e.Shape.Aggregate(1L, (a, b) => a * b);
        int elem = e.DType switch
        {
            "F32" => 4,
            "F16" => 2,
            "BF16" => 2,
            _ => throw new InvalidModelException(Path, $"tensor {name} has dtype {e.DType}; supported dtypes are F32, F16 and BF16"),
        };
        if (count * elem != e.End - e.Begin)
            throw new InvalidModelException(Path,
                $"tensor {name}: shape [{string.Join(", ", e.Shape)}] of {e.DType} needs {count * elem} bytes, data_offsets give " +
                    $"{e.End - e.Begin}");
        int rows = e.Shape.Length switch
        {
            1 => 1,
            2 => checked((int)e.Shape[0]),
            _ => throw new InvalidModelException(Path, $"tensor {name} has {e.Shape.Length} dimensions; expected 1 or 2"),
        };
        int cols = checked((int)e.Shape[^1]);
        using var r = new TensorFileReader(Path, progress) { ProgressBase = progressBase, ProgressTotal = progressTotal };
        r.Position = DataStart + e.Begin;
        return e.DType == "F32"
            ? WeightTensor.FromF32(name, rows, cols, r.ReadArray<float>(count, name))
            : WeightTensor.From16(name, rows, cols, e.DType == "F16" ? WeightType.F16 : WeightType.BF16, r.ReadArray<ushort>(count, name));
    }
}
