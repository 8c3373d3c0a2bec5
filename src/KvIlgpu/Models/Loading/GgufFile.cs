using System.Text;
using KvIlgpu.Models.Quantization;

namespace KvIlgpu.Models.Loading;

/// <summary>Reads the GGUF container (versions 2 and 3): metadata key/values, tensor infos, aligned data.
/// Tensor dims are ggml's ne[]: ne[0] is the contiguous (column) axis.</summary>
internal sealed class GgufFile
{
    public string Path { get; }
    public uint Version { get; }
    public IReadOnlyDictionary<string, object> Metadata { get; }
    public IReadOnlyDictionary<string, GgufTensorInfo> Tensors { get; }
    public long DataStart { get; }

    private GgufFile(string path, uint version, Dictionary<string, object> meta, Dictionary<string, GgufTensorInfo> tensors, long dataStart)
    {
        Path = path; Version = version; Metadata = meta; Tensors = tensors; DataStart = dataStart;
    }

    public static GgufFile Open(string path)
    {
        using var r = new TensorFileReader(path, null);
        if (r.ReadUInt32("magic") != 0x46554747) throw new InvalidModelException(path, "not a GGUF file (bad magic)");
        uint version = r.ReadUInt32("version");
        if (version is not (2 or 3)) throw new InvalidModelException(path, $"GGUF version {version} is not supported (2 and 3 are)");
        ulong tensorCount = r.ReadUInt64("tensor count"), kvCount = r.ReadUInt64("metadata count");
        if (tensorCount > 1_000_000 || kvCount > 1_000_000) throw new InvalidModelException(path, "implausible GGUF header counts");
        var meta = new Dictionary<string, object>();
        for (ulong i = 0; i < kvCount; i++)
        {
            string key = ReadString(r, "metadata key");
            uint type = r.ReadUInt32($"metadata {key} type");
            if (meta.ContainsKey(key)) throw new InvalidModelException(path, $"metadata {key} appears twice");
            meta[key] = ReadValue(r, type, key);
        }
        var tensors = new Dictionary<string, GgufTensorInfo>();
        for (ulong i = 0; i < tensorCount; i++)
        {
            string name = ReadString(r, "tensor name");
            uint nd = r.ReadUInt32($"tensor {name} n_dims");
            if (nd is 0 or > 4) throw new InvalidModelException(path, $"tensor {name} has {nd} dimensions");
            var dims = new ulong[nd];
            for (int d = 0; d < nd; d++) dims[d] = r.ReadUInt64($"tensor {name} dims");
            uint ttype = r.ReadUInt32($"tensor {name} type");
            ulong offset = r.ReadUInt64($"tensor {name} offset");
            if (tensors.ContainsKey(name)) throw new InvalidModelException(path, $"tensor {name} appears twice");
            tensors[name] = new GgufTensorInfo(name, dims, ttype, offset);
        }
        // GGUF's rule: general.alignment, when present, is a uint32 power of two (32 otherwise); the data section starts at
        // the next multiple of it, and every tensor's offset within it is a multiple of it.
        long alignment = 32;
        if (meta.TryGetValue("general.alignment", out var a))
        {
            if (a is not uint align || align == 0 || (align & (align - 1)) != 0)
                throw new InvalidModelException(path, $"general.alignment must be a uint32 power of two, got {a} ({a.GetType().Name})");
            alignment = align;
        }
        long dataStart = (r.Position + alignment - 1) / alignment * alignment;
        long dataLength = r.Length - dataStart;
        var extents = new List<(long Begin, long End, string Name)>();
        foreach (var t in tensors.Values)
        {
            if (t.Dims.Any(d => d == 0 || d > int.MaxValue)) throw new InvalidModelException(path, $"tensor {t.Name}: dims " +
                $"[{string.Join(", ", t.Dims)}]");
            long size = TensorByteSize(t);
            if (size < 0) throw new InvalidModelException(path, $"tensor {t.Name} has ggml type {t.Type}, which is not a known type");
            if (size == 0) throw new InvalidModelException(path, $"tensor {t.Name}: dims [{string.Join(", ", t.Dims)}] do not fit its " +
                $"{(GgmlType)t.Type} blocks (or are too large)");
            if (t.Offset % (ulong)alignment != 0)
                throw new InvalidModelException(path, $"tensor {t.Name}: offset {t.Offset} is not a multiple of the alignment {alignment}");
            if (t.Offset > (ulong)dataLength || size > dataLength - (long)t.Offset)
                throw new InvalidModelException(path, $"truncated: tensor {t.Name} needs bytes {t.Offset}..{(decimal)t.Offset + size} " +
                    $"of the " +
                    $"data section, which holds {Math.Max(0, dataLength)}");
            extents.Add(((long)t.Offset, (long)t.Offset + size, t.Name));
        }
        var sorted = extents.OrderBy(e => e.Begin).ToList();
        for (int i = 1; i < sorted.Count; i++)
            if (sorted[i].Begin < sorted[i - 1].End)
                throw new InvalidModelException(path, $"tensors {sorted[i - 1].Name} and {sorted[i].Name} overlap in the data section");
        return new GgufFile(path, version, meta, tensors, dataStart);
    }

    private static string ReadString(TensorFileReader r, string what)
    {
        ulong len = r.ReadUInt64(what + " length");
        return Encoding.UTF8.GetString(r.ReadBytes((long)len, what));
    }

    private static object ReadValue(TensorFileReader r, uint type, string key) => type switch
    {
        0 => r.ReadBytes(1, key)[0],
        1 => (sbyte)r.ReadBytes(1, key)[0],
        2 => BitConverter.ToUInt16(r.ReadBytes(2, key)),
        3 => BitConverter.ToInt16(r.ReadBytes(2, key)),
        4 => r.ReadUInt32(key),
        5 => r.ReadInt32(key),
        6 => r.ReadSingle(key),
        7 => r.ReadBytes(1, key)[0] != 0,
        8 => ReadString(r, key),
        9 => ReadArray(r, key),
        10 => r.ReadUInt64(key),
        11 => r.ReadInt64(key),
        12 => BitConverter.ToDouble(r.ReadBytes(8, key)),
        _ => throw new InvalidModelException(r.Path, $"metadata {key} has unknown value type {type}"),
    };

    private static object ReadArray(TensorFileReader r, string key)
    {
        uint type = r.ReadUInt32(key + " array type");
        ulong n = r.ReadUInt64(key + " array length");
        if (n > 50_000_000) throw new InvalidModelException(r.Path, $"metadata {key}: implausible array length {n}");
        var items = new object[n];
        for (ulong i = 0; i < n; i++) items[i] = ReadValue(r, type, key);
        return items;
    }

    public T? Get<T>(string key)
    {
        if (!Metadata.TryGetValue(key, out var v)) return default;
        if (v is T t) return t;
        return (T)Convert.ChangeType(v, typeof(T), System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>Reads a tensor as [rows, cols] (rows = product of ne[1..], cols = ne[0]); f16/bf16 stay 16-bit and the
    /// quantised block formats stay raw blocks.</summary>
    public WeightTensor Read(string name, IProgress<LoadProgress>? progress, long progressBase, long progressTotal)
    {
        if (!Tensors.TryGetValue(name, out var info)) throw new InvalidModelException(Path, $"tensor {name} is missing");
        long cols = (long)info.Dims[0];
        long rows = 1;
        for (int d = 1; d < info.Dims.Length; d++) rows *= (long)info.Dims[d];
        long count = rows * cols;
        if (rows > int.MaxValue || count > Array.MaxLength)
            throw new InvalidModelException(Path, $"tensor {name}: {rows} x {cols} elements are more than one array holds");
        using var r = new TensorFileReader(Path, progress, buffered: false) { ProgressBase = progressBase, ProgressTotal = progressTotal };
        r.Position = DataStart + (long)info.Offset;
        var type = WeightTypeOf(info.Type) ?? throw new InvalidModelException(Path, $"tensor {name} has ggml type {info.Type} " +
            $"({(GgmlType)info.Type}); supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K");
        switch (type)
        {
            case WeightType.F32:
                return WeightTensor.FromF32(name, (int)rows, (int)cols, r.ReadArray<float>(count, name));
            case WeightType.F16 or WeightType.BF16:
                return WeightTensor.From16(name, (int)rows, (int)cols, type, r.ReadArray<ushort>(count, name));
            default:
                // Open() checked that ne[0] is a whole number of blocks and that the bytes are in the file.
                long bytes = rows * QuantFormats.RowBytes(type, cols);
                if (bytes > Array.MaxLength)
                    throw new InvalidModelException(Path, $"tensor {name}: {bytes} bytes are more than one array holds");
                return WeightTensor.FromBlocks(name, (int)rows, (int)cols, type, r.ReadArray<byte>(bytes, name));
        }
    }

    /// <summary>The weight type a ggml type id is held as; null for a type this loader does not read.</summary>
    public static WeightType? WeightTypeOf(uint ggmlType) => (GgmlType)ggmlType switch
    {
        GgmlType.F32 => WeightType.F32,
        GgmlType.F16 => WeightType.F16,
        GgmlType.BF16 => WeightType.BF16,
        GgmlType.Q8_0 => WeightType.Q8_0,
        GgmlType.Q4_0 => WeightType.Q4_0,
        GgmlType.Q4_1 => WeightType.Q4_1,
        GgmlType.Q5_0 => WeightType.Q5_0,
        GgmlType.Q5_1 => WeightType.Q5_1,
        GgmlType.Q4_K => WeightType.Q4_K,
        GgmlType.Q5_K => WeightType.Q5_K,
        GgmlType.Q6_K => WeightType.Q6_K,
        _ => null,
    };

    /// <summary>Bytes a tensor takes in the data section, from its type's block layout (ggml's type traits: elements and
    /// bytes per block); 0 when its row length does not fit the blocks or the size overflows, -1 for an unknown type.</summary>
    public static long TensorByteSize(GgufTensorInfo info)
    {
        (long Elements, long Bytes)? block = info.Type switch
        {
            0 => (1, 4),
            1 => (1, 2),
            30 => (1, 2),
            28 => (1, 8),      // F32, F16, BF16, F64
            24 => (1, 1),
            25 => (1, 2),
            26 => (1, 4),
            27 => (1, 8),    // I8, I16, I32, I64
            2 => (32, 18),
            3 => (32, 20),
            6 => (32, 22),
            7 => (32, 24), // Q4_0, Q4_1, Q5_0, Q5_1
            8 => (32, 34),
            9 => (32, 36),                               // Q8_0, Q8_1
            10 => (256, 84),
            11 => (256, 110),
            12 => (256, 144),        // Q2_K, Q3_K, Q4_K
            13 => (256, 176),
            14 => (256, 210),
            15 => (256, 292),       // Q5_K, Q6_K, Q8_K
            _ => null,
        };
        if (block is not var (elements, bytes)) return -1;
        if (info.Dims[0] % (ulong)elements != 0) return 0;
        try
        {
            long count = checked(info.Dims.Aggregate(1L, (acc, d) => acc * (long)d));
            return checked(count / elements * bytes);
        }
        catch (OverflowException) { return 0; }
    }
}
