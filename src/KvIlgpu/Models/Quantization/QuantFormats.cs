using System.Buffers.Binary;

namespace KvIlgpu.Models.Quantization;

/// <summary>ggml's quantised block formats as GGUF stores them (ggml-common.h's block_* structs, little-endian):
/// their sizes and the plain decoding of one block to f32. This is the host's reference decoder; the CPU and ILGPU
/// kernels decode the same bits in their own way and are tested against it.
/// <para>Layouts (bytes, in order):</para>
/// <list type="bullet">
/// <item>q8_0 (32 values, 34 bytes): f16 d, 32 x int8 q. x = d q.</item>
/// <item>q4_0 (32, 18): f16 d, 16 bytes; byte j holds value j (low nibble) and j + 16 (high). x = d (q - 8).</item>
/// <item>q4_1 (32, 20): f16 d, f16 m, nibbles as q4_0. x = d q + m.</item>
/// <item>q5_0 (32, 22): f16 d, uint32 qh (bit i: fifth bit of value i), nibbles as q4_0. x = d (q - 16).</item>
/// <item>q5_1 (32, 24): f16 d, f16 m, qh, nibbles. x = d q + m.</item>
/// <item>q4_K (256, 144): f16 d, f16 dmin, 12 bytes of eight 6-bit scales and mins, 128 bytes of nibbles: each 64 values
/// take 32 bytes, the first 32 values the low nibbles, the next 32 the high. x = d sc q - dmin m per sub-block of 32.</item>
/// <item>q5_K (256, 176): f16 d, f16 dmin, 12 scale bytes, 32 bytes qh, 128 bytes nibbles as q4_K; the fifth bit of
/// value 64c + l (l &lt; 32) is bit 2c of qh[l], of value 64c + 32 + l bit 2c + 1.</item>
/// <item>q6_K (256, 210): 128 bytes ql (low 4 bits), 64 bytes qh (high 2 bits), 16 x int8 scales, f16 d. In each half of
/// 128 values (ql + 64n, qh + 32n, scales + 8n) value 32 i + l takes the low (i &lt; 2) or high nibble of ql[l + 32 (i mod 2)]
/// and bits 2i..2i+1 of qh[l]; its scale is scales[l / 16 + 2 i]. x = d sc (q - 32).</item>
/// </list></summary>
public static class QuantFormats
{
    /// <summary>Whether the type is one of ggml's block formats.</summary>
    public static bool IsQuantized(this WeightType type) => type >= WeightType.Q8_0;

    /// <summary>Values per block.</summary>
    public static int BlockElements(WeightType type) => type switch
    {
        WeightType.Q4_K or WeightType.Q5_K or WeightType.Q6_K => 256,
        WeightType.Q8_0 or WeightType.Q4_0 or WeightType.Q4_1 or WeightType.Q5_0 or WeightType.Q5_1 => 32,
        _ => 1,
    };

    /// <summary>Bytes per block (per element for f32, f16 and bf16).</summary>
    public static int BlockBytes(WeightType type) => type switch
    {
        WeightType.F32 => 4,
        WeightType.F16 or WeightType.BF16 => 2,
        WeightType.Q8_0 => 34,
        WeightType.Q4_0 => 18,
        WeightType.Q4_1 => 20,
        WeightType.Q5_0 => 22,
        WeightType.Q5_1 => 24,
        WeightType.Q4_K => 144,
        WeightType.Q5_K => 176,
        WeightType.Q6_K => 210,
        _ => throw new ArgumentOutOfRangeException(nameof(type)),
    };

    /// <summary>Bytes of one row of cols values (cols a multiple of the block size).</summary>
    public static long RowBytes(WeightType type, long cols) => cols / BlockElements(type) * BlockBytes(type);

    /// <summary>The GGUF name of the type (as llama.cpp prints it).</summary>
    public static string GgmlName(WeightType type) => type.ToString().ToLowerInvariant().Replace("_k", "_K");

    private static float Half(ReadOnlySpan<byte> b, int offset) => FloatBits.FromHalf(BinaryPrimitives.ReadUInt16LittleEndian(b[offset..]));

    /// <summary>Decodes one block (BlockBytes(type) bytes) to BlockElements(type) values.</summary>
    public static void DequantizeBlock(WeightType type, ReadOnlySpan<byte> block, Span<float> y)
    {
        switch (type)
        {
            case WeightType.Q8_0:
                {
                    float d = Half(block, 0);
                    for (int i = 0; i < 32; i++) y[i] = d * (sbyte)block[2 + i];
                    break;
                }
            case WeightType.Q4_0 or WeightType.Q4_1:
                {
                    bool hasMin = type == WeightType.Q4_1;
                    float d = Half(block, 0), m = hasMin ? Half(block, 2) : 0;
                    var qs = block[(hasMin ? 4 : 2)..];
                    for (int j = 0; j < 16; j++)
                    {
                        int lo = qs[j] & 0xF, hi = qs[j] >> 4;
                        y[j] = hasMin ? d * lo + m : d * (lo - 8);
                        y[j + 16] = hasMin ? d * hi + m : d * (hi - 8);
                    }
                    break;
                }
            case WeightType.Q5_0 or WeightType.Q5_1:
                {
                    bool hasMin = type == WeightType.Q5_1;
                    float d = Half(block, 0), m = hasMin ? Half(block, 2) : 0;
                    uint qh = BinaryPrimitives.ReadUInt32LittleEndian(block[(hasMin ? 4 : 2)..]);
                    var qs = block[(hasMin ? 8 : 6)..];
                    for (int j = 0; j < 16; j++)
                    {
                        int lo = (qs[j] & 0xF) | (int)((qh >> j) & 1) << 4, hi = (qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
                        y[j] = hasMin ? d * lo + m : d * (lo - 16);
                        y[j + 16] = hasMin ? d * hi + m : d * (hi - 16);
                    }
                    break;
                }
            case WeightType.Q4_K or WeightType.Q5_K:
                {
                    bool five = type == WeightType.Q5_K;
                    float d = Half(block, 0), dmin = Half(block, 2);
                    var scales = block.Slice(4, 12);
                    var qh = five ? block.Slice(16, 32) : default;
                    var qs = block[(five ? 48 : 16)..];
                    for (int c = 0; c < 4; c++)
                        for (int half = 0; half < 2; half++)
                        {
                            var (sc, mn) = ScaleMin(scales, 2 * c + half);
                            float scale = d * sc, min = dmin * mn;
                            for (int l = 0; l < 32; l++)
                            {
                                int q = half == 0 ? qs[32 * c + l] & 0xF : qs[32 * c + l] >> 4;
                                if (five) q |= ((qh[l] >> (2 * c + half)) & 1) << 4;
                                y[64 * c + 32 * half + l] = scale * q - min;
                            }
                        }
                    break;
                }
            case WeightType.Q6_K:
                {
                    float d = Half(block, 208);
                    for (int n = 0; n < 2; n++)
                    {
                        var ql = block.Slice(64 * n, 64);
                        var qh = block.Slice(128 + 32 * n, 32);
                        var sc = block.Slice(192 + 8 * n, 8);
                        for (int i = 0; i < 4; i++)
                            for (int l = 0; l < 32; l++)
                            {
                                int low = ql[l + 32 * (i & 1)];
                                int q = (i < 2 ? low & 0xF : low >> 4) | ((qh[l] >> (2 * i)) & 3) << 4;
                                y[128 * n + 32 * i + l] = d * (sbyte)sc[l / 16 + 2 * i] * (q - 32);
                            }
                    }
                    break;
                }
            default: throw new ArgumentOutOfRangeException(nameof(type), $"{type} is not a block format");
        }
    }

    /// <summary>Sub-block j's 6-bit scale and minimum from q4_K's and q5_K's 12 packed bytes: j &lt; 4 in the low 6 bits
    /// of bytes j and j + 4; j &gt;= 4 in the nibbles of byte j + 4 with their top 2 bits in the top bits of bytes j - 4
    /// (scale) and j (minimum).</summary>
    public static (int Scale, int Min) ScaleMin(ReadOnlySpan<byte> scales, int j) => j < 4
        ? (scales[j] & 63, scales[j + 4] & 63)
        : ((scales[j + 4] & 0xF) | (scales[j - 4] >> 6) << 4, (scales[j + 4] >> 4) | (scales[j] >> 6) << 4);

    /// <summary>Decodes count values of whole blocks.</summary>
    public static void Dequantize(WeightType type, ReadOnlySpan<byte> blocks, Span<float> y)
    {
        int elements = BlockElements(type), bytes = BlockBytes(type);
        for (int b = 0; b < y.Length / elements; b++)
            DequantizeBlock(type, blocks.Slice(b * bytes, bytes), y.Slice(b * elements, elements));
    }

    /// <summary>The byte offsets of a block's f16 scale fields (d, and dmin or m where the format has one).</summary>
    public static int[] ScaleOffsets(WeightType type) => type switch
    {
        WeightType.Q8_0 or WeightType.Q4_0 or WeightType.Q5_0 => [0],
        WeightType.Q4_1 or WeightType.Q5_1 or WeightType.Q4_K or WeightType.Q5_K => [0, 2],
        WeightType.Q6_K => [208],
        _ => [],
    };

    /// <summary>The first block whose f16 scale fields are NaN or infinite, or -1. (Every other field is a small integer,
    /// so a block with finite scales decodes to finite values.)</summary>
    public static long FirstNonFiniteScale(WeightType type, ReadOnlySpan<byte> blocks)
    {
        int bytes = BlockBytes(type);
        var offsets = ScaleOffsets(type);
        for (long b = 0; b < blocks.Length / bytes; b++)
            foreach (int o in offsets)
                if ((BinaryPrimitives.ReadUInt16LittleEndian(blocks[(int)(b * bytes + o)..]) & 0x7C00) == 0x7C00) return b;
        return -1;
    }
}
