using System.Text.Json;

namespace KvIlgpu.Models.Loading;

/// <summary>Reads the safetensors format: an 8-byte little-endian header length, a JSON header mapping
/// tensor names to dtype, shape and data_offsets, then the raw data (offsets relative to its start).</summary>
internal sealed class SafetensorsFile
{
    public string Path { get; }
    public IReadOnlyDictionary<string, SafetensorsEntry> Entries { get; }
    public long DataStart { get; }
    /// <summary>The header's __metadata__ (empty when it has none).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    private SafetensorsFile(string path, Dictionary<string, SafetensorsEntry> entries, long dataStart,
        Dictionary<string, string> metadata)
    {
        Path = path; Entries = entries; DataStart = dataStart; Metadata = metadata;
    }

    /// <summary>Bytes per element of every dtype the format defines.</summary>
    private static readonly Dictionary<string, int> DTypeSizes = new()
    {
        ["BOOL"] = 1, ["U8"] = 1, ["I8"] = 1, ["F8_E4M3"] = 1, ["F8_E5M2"] = 1, ["I16"] = 2, ["U16"] = 2, ["F16"] = 2, ["BF16"] = 2,
        ["I32"] = 4, ["U32"] = 4, ["F32"] = 4, ["F64"] = 8, ["I64"] = 8, ["U64"] = 8,
    };

    /// <summary>Opens a file and checks its header as the format's reference library does: the header length within the
    /// file, a JSON object whose entries each have a known dtype, a shape of non-negative sizes and two data_offsets; the
    /// tensors' byte ranges contiguous from 0, without overlap, exactly covering the data section, each the size its
    /// dtype and shape need; __metadata__ a map of strings. Every failure is an <see cref="InvalidModelException"/> that
    /// names the file and, where it applies, the tensor.</summary>
    public static SafetensorsFile Open(string path)
    {
        using var r = new TensorFileReader(path, null);
        long headerLen = r.ReadInt64("safetensors header length");
        if (headerLen <= 0 || headerLen > 100_000_000)
            throw new InvalidModelException(path, $"not a safetensors file: header length {headerLen}");
        if (headerLen > r.Length - 8)
            throw new InvalidModelException(path, $"truncated: the safetensors header claims {headerLen} bytes, the file has " +
                $"{r.Length - 8} after its length");
        var json = r.ReadBytes(headerLen, "safetensors header");
        JsonElement root;
        try
        {
            using var doc = JsonDocument.Parse(json);
            root = doc.RootElement.Clone();
        }
        catch (JsonException e) { throw new InvalidModelException(path, "safetensors header is not valid JSON", e); }
        if (root.ValueKind != JsonValueKind.Object) throw new InvalidModelException(path, "safetensors header is not a JSON object");
        var entries = new Dictionary<string, SafetensorsEntry>();
        var metadata = new Dictionary<string, string>();
        long dataLen = r.Length - 8 - headerLen;
        foreach (var p in root.EnumerateObject())
        {
            if (p.Name == "__metadata__")
            {
                if (p.Value.ValueKind != JsonValueKind.Object || p.Value.EnumerateObject().Any(m =>
                    m.Value.ValueKind != JsonValueKind.String))
                    throw new InvalidModelException(path, "__metadata__ must map names to strings");
                foreach (var m in p.Value.EnumerateObject()) metadata[m.Name] = m.Value.GetString()!;
                continue;
            }
            if (entries.ContainsKey(p.Name)) throw new InvalidModelException(path, $"tensor {p.Name} appears twice in the header");
            entries[p.Name] = Entry(path, p.Name, p.Value);
        }
        foreach (var e in entries.Values.Where(e => e.End > dataLen).OrderBy(e => e.Begin).Take(1))
            throw new InvalidModelException(path,
                $"truncated: tensor {e.Name} ends at data offset {e.End}, but the file holds only {dataLen} bytes of data");
        // The byte ranges, in order, must tile the data section exactly.
        long expected = 0;
        foreach (var e in entries.Values.OrderBy(e => e.Begin).ThenBy(e => e.End))
        {
            if (e.Begin != expected)
                throw new InvalidModelException(path, e.Begin < expected
                    ? $"tensor {e.Name}: data_offsets [{e.Begin}, {e.End}] overlap the tensor before it (which ends at {expected})"
                    : $"tensor {e.Name}: data_offsets start at {e.Begin}, leaving a gap after byte {expected}");
            expected = e.End;
        }
        if (expected != dataLen)
            throw new InvalidModelException(path,
                $"the tensors cover {expected} bytes of data, but the file holds {dataLen}: trailing bytes or a missing tensor");
        return new SafetensorsFile(path, entries, 8 + headerLen, metadata);
    }

    private static SafetensorsEntry Entry(string path, string name, JsonElement value)
    {
        InvalidModelException Bad(string what) => new(path, $"tensor {name}: {what}");
        if (value.ValueKind != JsonValueKind.Object) throw Bad("its header entry is not an object");
        if (!value.TryGetProperty("dtype", out var dtypeEl) || dtypeEl.ValueKind != JsonValueKind.String) throw Bad("dtype is missing " +
            "or not a string");
        string dtype = dtypeEl.GetString()!;
        if (!DTypeSizes.TryGetValue(dtype, out int size)) throw Bad($"unknown dtype {dtype}");
        if (!value.TryGetProperty("shape", out var shapeEl) || shapeEl.ValueKind != JsonValueKind.Array) throw Bad("shape is missing or " +
            "not an array");
        var shape = shapeEl.EnumerateArray().Select(d => d.ValueKind == JsonValueKind.Number && d.TryGetInt64(out long n) && n >= 0 ? n
            : throw Bad($"shape holds {d.GetRawText()}, not a size")).ToArray();
        if (!value.TryGetProperty("data_offsets", out var offsEl) || offsEl.ValueKind != JsonValueKind.Array
            || offsEl.GetArrayLength() != 2)
            throw Bad("data_offsets must be two numbers [begin, end]");
        var offs = offsEl.EnumerateArray().Select(d => d.ValueKind == JsonValueKind.Number && d.TryGetInt64(out long n) && n >= 0 ? n
            : throw Bad($"data_offsets hold {d.GetRawText()}, not a byte offset")).ToArray();
        if (offs[1] < offs[0]) throw Bad($"data_offsets [{offs[0]}, {offs[1]}] end before they begin");
        long bytes;
        try { bytes = checked(shape.Aggregate(1L, (a, d) => a * d) * size); }
        catch (OverflowException) { throw Bad($"shape [{string.Join(", ", shape)}] is too large"); }
        if (bytes != offs[1] - offs[0])
            throw Bad($"shape [{string.Join(", ", shape)}] of {dtype} needs {bytes} bytes, data_offsets give {offs[1] - offs[0]}");
        return new SafetensorsEntry(name, dtype, shape, offs[0], offs[1]);
    }

    /// <summary>Reads an F32 tensor of any shape as a flat array, refusing another dtype or shape with an error naming it.
    /// </summary>
    public float[] ReadF32(string name, params long[] shape)
    {
        if (!Entries.TryGetValue(name, out var e)) throw new InvalidModelException(Path, $"tensor {name} is missing");
        if (e.DType != "F32") throw new InvalidModelException(Path, $"tensor {name} has dtype {e.DType}; expected F32");
        if (!e.Shape.SequenceEqual(shape))
            throw new InvalidModelException(Path, $"tensor {name} has shape [{string.Join(", ", e.Shape)}]; expected " +
                $"[{string.Join(", ", shape)}]");
        using var r = new TensorFileReader(Path, null, buffered: false);
        r.Position = DataStart + e.Begin;
        return r.ReadArray<float>(shape.Aggregate(1L, (a, b) => a * b), name);
    }

    /// <summary>Reads a tensor as a [rows, cols] weight (a 1-D tensor is one row), keeping f16/bf16 as stored.</summary>
    public WeightTensor Read(string name, IProgress<LoadProgress>? progress, long progressBase, long progressTotal)
    {
        var e = Entries[name];
        long count = e.Shape.Aggregate(1L, (a, b) => a * b);
        // Open checked that the byte range is exactly the size dtype and shape need; here only the dtypes weights may use.
        var type = WeightTypeOf(e.DType)
            ?? throw new InvalidModelException(Path, $"tensor {name} has dtype {e.DType}; supported dtypes are F32, F16 and BF16");
        if (e.Shape.Length is not (1 or 2))
            throw new InvalidModelException(Path, $"tensor {name} has {e.Shape.Length} dimensions; expected 1 or 2");
        if (e.Shape.Any(d => d > int.MaxValue) || count > int.MaxValue)
            throw new InvalidModelException(Path, $"tensor {name}: shape [{string.Join(", ", e.Shape)}] is too large");
        int rows = e.Shape.Length == 1 ? 1 : (int)e.Shape[0];
        int cols = (int)e.Shape[^1];
        using var r = new TensorFileReader(Path, progress, buffered: false) { ProgressBase = progressBase, ProgressTotal = progressTotal };
        r.Position = DataStart + e.Begin;
        return type == WeightType.F32
            ? WeightTensor.FromF32(name, rows, cols, r.ReadArray<float>(count, name))
            : WeightTensor.From16(name, rows, cols, type, r.ReadArray<ushort>(count, name));
    }

    /// <summary>The weight type a safetensors dtype is held as; null for a dtype weights may not use.</summary>
    public static WeightType? WeightTypeOf(string dtype) => dtype switch
    {
        "F32" => WeightType.F32,
        "F16" => WeightType.F16,
        "BF16" => WeightType.BF16,
        _ => null,
    };
}
