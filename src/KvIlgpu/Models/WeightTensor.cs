using System.Runtime.InteropServices;
using KvIlgpu.Models.Quantization;

namespace KvIlgpu.Models;

/// <summary>A weight matrix or vector on the host, row-major [Rows, Cols], in its stored precision.
/// f16 and bf16 keep their raw 16-bit patterns; ggml's quantised formats keep their raw blocks (rows never share a
/// block, since a row's length is a multiple of the block size).</summary>
public sealed class WeightTensor
{
    /// <summary>The tensor's name in its file.</summary>
    public string Name { get; }
    /// <summary>Rows (output features of a matrix; 1 for a vector).</summary>
    public int Rows { get; }
    /// <summary>Columns (input features).</summary>
    public int Cols { get; }
    /// <summary>How the elements are stored.</summary>
    public WeightType Type { get; }
    /// <summary>Elements when Type is F32.</summary>
    public float[]? F32 { get; }
    /// <summary>Raw 16-bit patterns when Type is F16 or BF16.</summary>
    public ushort[]? Bits16 { get; }

    /// <summary>Raw ggml blocks, row after row, when Type is a quantised format.</summary>
    public byte[]? Blocks { get; }

    /// <summary>Elements.</summary>
    public long Length => (long)Rows * Cols;
    /// <summary>Bytes of the elements as stored.</summary>
    public long ByteSize => Blocks?.LongLength ?? Length * (Type == WeightType.F32 ? 4 : 2);

    private WeightTensor(string name, int rows, int cols, WeightType type, float[]? f32, ushort[]? bits, byte[]? blocks = null)
    {
        Name = name; Rows = rows; Cols = cols; Type = type; F32 = f32; Bits16 = bits; Blocks = blocks;
    }

    /// <summary>A quantised tensor of shape [rows, cols] over its raw ggml blocks (not copied).</summary>
    public static WeightTensor FromBlocks(string name, int rows, int cols, WeightType type, byte[] blocks)
    {
        if (!type.IsQuantized()) throw new ArgumentException($"{type} is not a block format");
        if (cols % QuantFormats.BlockElements(type) != 0)
            throw new ArgumentException($"tensor {name}: {QuantFormats.GgmlName(type)} rows must be a multiple of " +
                $"{QuantFormats.BlockElements(type)} long, got {cols}");
        if (blocks.LongLength != rows * QuantFormats.RowBytes(type, cols))
            throw new ArgumentException($"tensor {name}: {blocks.Length} bytes for [{rows}, {cols}] in {QuantFormats.GgmlName(type)}");
        return new(name, rows, cols, type, null, null, blocks);
    }

    /// <summary>A float32 tensor of shape [rows, cols] over data (not copied).</summary>
    public static WeightTensor FromF32(string name, int rows, int cols, float[] data)
    {
        if (data.LongLength != (long)rows * cols)
            throw new ArgumentException($"tensor {name}: {data.Length} elements for shape [{rows}, {cols}]");
        return new(name, rows, cols, WeightType.F32, data, null);
    }

    /// <summary>An f16 or bf16 tensor of shape [rows, cols] over raw 16-bit patterns (not copied).</summary>
    public static WeightTensor From16(string name, int rows, int cols, WeightType type, ushort[] bits)
    {
        if (type == WeightType.F32) throw new ArgumentException("use FromF32 for f32 tensors");
        if (bits.LongLength != (long)rows * cols)
            throw new ArgumentException($"tensor {name}: {bits.Length} elements for shape [{rows}, {cols}]");
        return new(name, rows, cols, type, null, bits);
    }

    /// <summary>The elements widened (or dequantised) to f32 (a copy unless Type is F32).</summary>
    public float[] ToFloat()
    {
        if (F32 != null) return F32;
        var result = new float[Length];
        if (Blocks != null) QuantFormats.Dequantize(Type, Blocks, result);
        else ConvertToFloat(Bits16!, Type, result);
        return result;
    }

    /// <summary>Row r widened (or dequantised) to f32 into dst (Cols long).</summary>
    public void RowToFloat(int row, Span<float> dst)
    {
        if (F32 != null) F32.AsSpan(row * Cols, Cols).CopyTo(dst);
        else if (Blocks != null)
        {
            long rowBytes = QuantFormats.RowBytes(Type, Cols);
            QuantFormats.Dequantize(Type, Blocks.AsSpan((int)(row * rowBytes), (int)rowBytes), dst[..Cols]);
        }
        else ConvertToFloat(Bits16.AsSpan(row * Cols, Cols), Type, dst[..Cols]);
    }

    /// <summary>Converts this tensor to another stored precision (rounding to nearest even for bf16).</summary>
    public WeightTensor ConvertTo(WeightType type)
    {
        if (type == Type) return this;
        if (type.IsQuantized()) throw new ArgumentException($"tensor {Name}: quantising to {type} is not supported");
        if (type == WeightType.F32) return FromF32(Name, Rows, Cols, ToFloat());
        var src = ToFloat();
        var bits = new ushort[src.Length];
        for (long i = 0; i < src.LongLength; i++)
            bits[i] = type == WeightType.BF16 ? FloatBits.ToBFloat16(src[i]) : BitConverter.HalfToUInt16Bits((Half)src[i]);
        return From16(Name, Rows, Cols, type, bits);
    }

    /// <summary>The same elements seen as [rows, cols] (rows * cols must equal Length).</summary>
    public WeightTensor Reshaped(int rows, int cols) =>
        Blocks != null ? FromBlocks(Name, rows, cols, Type, Blocks) : new(Name, rows, cols, Type, F32, Bits16);

    internal static void ConvertToFloat(ReadOnlySpan<ushort> bits, WeightType type, Span<float> dst)
    {
        if (type == WeightType.BF16)
        {
            for (int i = 0; i < bits.Length; i++) dst[i] = FloatBits.FromBFloat16(bits[i]);
        }
        else
        {
            System.Numerics.Tensors.TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<ushort, Half>(bits), dst);
        }
    }
}
