using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace KvIlgpu.Models.Saving;

/// <summary>Writes tensors in the safetensors format (8-byte header length, JSON header, raw little-endian data).</summary>
internal static class SafetensorsWriter
{
    /// <summary>Writes the tensors in order, with metadata (string to string) beside the format's own "format": "pt".</summary>
    public static void Write(string path, IEnumerable<(string Name, WeightTensor Tensor, long[] Shape)> tensors,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.ToList();
        var header = new Dictionary<string, object>();
        long offset = 0;
        foreach (var (name, t, shape) in list)
        {
            string dtype = t.Type switch
            {
                WeightType.F32 => "F32",
                WeightType.F16 => "F16",
                WeightType.BF16 => "BF16",
                _ => throw new ArgumentException($"tensor {name} is {t.Type}: safetensors has no ggml block types"),
            };
            header[name] = new { dtype, shape, data_offsets = new[] { offset, offset + t.ByteSize } };
            offset += t.ByteSize;
        }
        var meta = new Dictionary<string, string> { ["format"] = "pt" };
        foreach (var (k, v) in metadata ?? new Dictionary<string, string>()) meta[k] = v;
        header["__metadata__"] = meta;
        var json = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header));
        int pad = (8 - json.Length % 8) % 8; // keep data 8-byte aligned, padding with spaces as the spec allows
        using var f = new FileStream(path, FileMode.Create, FileAccess.Write);
        f.Write(BitConverter.GetBytes((long)(json.Length + pad)));
        f.Write(json);
        for (int i = 0; i < pad; i++) f.WriteByte((byte)' ');
        foreach (var (_, t, _) in list)
        {
            if (t.F32 != null) f.Write(MemoryMarshal.AsBytes(t.F32.AsSpan()));
            else f.Write(MemoryMarshal.AsBytes(t.Bits16.AsSpan()));
        }
    }
}
