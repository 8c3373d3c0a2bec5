using System.Buffers.Binary;

namespace KvIlgpu.Tests.Support;

/// <summary>The tests' own quantiser and reference decoder for ggml's block formats, written from the format definitions
/// (ggml-common.h's block structs and the element formulas of ggml's dequantize_row_* functions), independent of the
/// library's decoders. The quantiser is the plain round-to-nearest kind (llama.cpp's reference quantisers without
/// importance weights); any valid encoding serves, since what is tested is that every reader decodes the same bits to
/// the same values.</summary>
internal static class GgmlQuantizer
{
    public static int BlockValues(GgufType t) => t is GgufType.Q4_K or GgufType.Q5_K or GgufType.Q6_K ? 256 : 32;

    public static int BlockBytes(GgufType t) => t switch
    {
        GgufType.Q8_0 => 34,
        GgufType.Q4_0 => 18,
        GgufType.Q4_1 => 20,
        GgufType.Q5_0 => 22,
        GgufType.Q5_1 => 24,
        GgufType.Q4_K => 144,
        GgufType.Q5_K => 176,
        GgufType.Q6_K => 210,
        _ => throw new ArgumentException(t.ToString()),
    };

    private static void PutHalf(byte[] b, int at, float v) =>
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(at), BitConverter.HalfToUInt16Bits((Half)v));

    private static float GetHalf(byte[] b, long at) => (float)BitConverter.UInt16BitsToHalf(BinaryPrimitives.ReadUInt16LittleEndian(
        b.AsSpan((int)at)));

    /// <summary>Rounds the scale through f16 first, so codes are computed against the scale the reader will see.</summary>
    private static float AsHalf(float v) => (float)(Half)v;

    /// <summary>The signed value of largest magnitude.</summary>
    private static float SignedMax(ReadOnlySpan<float> x)
    {
        float m = 0;
        foreach (var v in x) if (Math.Abs(v) > Math.Abs(m)) m = v;
        return m;
    }

    private static int Clamp(double v, int lo, int hi) => (int)Math.Clamp(Math.Round(v), lo, hi);

    public static byte[] Quantize(GgufType t, float[] x)
    {
        int values = BlockValues(t), bytes = BlockBytes(t);
        var outb = new byte[x.Length / values * bytes];
        for (int b = 0; b < x.Length / values; b++)
            QuantizeBlock(t, x.AsSpan(b * values, values), outb, b * bytes);
        return outb;
    }

    private static void QuantizeBlock(GgufType t, ReadOnlySpan<float> x, byte[] o, int at)
    {
        switch (t)
        {
            case GgufType.Q8_0:
                {
                    float d = AsHalf(x.ToArray().Max(Math.Abs) / 127f);
                    PutHalf(o, at, d);
                    for (int i = 0; i < 32; i++) o[at + 2 + i] = (byte)(sbyte)Clamp(d == 0 ? 0 : x[i] / d, -127, 127);
                    break;
                }
            case GgufType.Q4_0 or GgufType.Q5_0:
                {
                    int half = t == GgufType.Q4_0 ? 8 : 16;
                    float d = AsHalf(SignedMax(x) / -half);
                    PutHalf(o, at, d);
                    var q = new int[32];
                    for (int i = 0; i < 32; i++) q[i] = Clamp(d == 0 ? half : x[i] / d + half, 0, 2 * half - 1);
                    PackNibbles(q, o, at + (t == GgufType.Q4_0 ? 2 : 6));
                    if (t == GgufType.Q5_0) PackFifthBits(q, o, at + 2);
                    break;
                }
            case GgufType.Q4_1 or GgufType.Q5_1:
                {
                    int levels = t == GgufType.Q4_1 ? 15 : 31;
                    float min = x.ToArray().Min(), max = x.ToArray().Max();
                    float d = AsHalf((max - min) / levels), m = AsHalf(min);
                    PutHalf(o, at, d); PutHalf(o, at + 2, m);
                    var q = new int[32];
                    for (int i = 0; i < 32; i++) q[i] = Clamp(d == 0 ? 0 : (x[i] - m) / d, 0, levels);
                    PackNibbles(q, o, at + (t == GgufType.Q4_1 ? 4 : 8));
                    if (t == GgufType.Q5_1) PackFifthBits(q, o, at + 4);
                    break;
                }
            case GgufType.Q4_K or GgufType.Q5_K:
                {
                    int levels = t == GgufType.Q4_K ? 15 : 31;
                    var scale = new float[8];
                    var minimum = new float[8];
                    for (int j = 0; j < 8; j++)
                    {
                        var sub = x.Slice(32 * j, 32).ToArray();
                        minimum[j] = Math.Max(0, -sub.Min()); // x = d sc q - dmin m, so m holds -min
                        scale[j] = (sub.Max() + minimum[j]) / levels;
                    }
                    float d = AsHalf(scale.Max() / 63), dmin = AsHalf(minimum.Max() / 63);
                    PutHalf(o, at, d); PutHalf(o, at + 2, dmin);
                    var sc = scale.Select(s => d == 0 ? 0 : Clamp(s / d, 0, 63)).ToArray();
                    var mn = minimum.Select(m => dmin == 0 ? 0 : Clamp(m / dmin, 0, 63)).ToArray();
                    for (int j = 0; j < 8; j++)
                        if (j < 4) { o[at + 4 + j] |= (byte)sc[j]; o[at + 8 + j] |= (byte)mn[j]; }
                        else
                        {
                            o[at + 8 + j] = (byte)((sc[j] & 0xF) | (mn[j] & 0xF) << 4);
                            o[at + 4 + j - 4] |= (byte)(sc[j] >> 4 << 6);
                            o[at + 4 + j] |= (byte)(mn[j] >> 4 << 6);
                        }
                    int qs = at + (t == GgufType.Q4_K ? 16 : 48);
                    for (int e = 0; e < 256; e++)
                    {
                        int j = e / 32;
                        float step = d * sc[j];
                        int q = step == 0 ? 0 : Clamp((x[e] + dmin * mn[j]) / step, 0, levels);
                        int c = e / 64, l = e % 32;
                        o[qs + 32 * c + l] |= (byte)(j % 2 == 0 ? q & 0xF : (q & 0xF) << 4);
                        if (t == GgufType.Q5_K && q > 15) o[at + 16 + l] |= (byte)(1 << j);
                    }
                    break;
                }
            case GgufType.Q6_K:
                {
                    var scale = new float[16];
                    for (int g = 0; g < 16; g++) scale[g] = SignedMax(x.Slice(16 * g, 16)) / -32;
                    float d = AsHalf(SignedMax(scale) / -127); // scales become int8 in -127..127 (sign folded into d)
                    PutHalf(o, at + 208, d);
                    var sc = scale.Select(s => d == 0 ? 0 : Clamp(s / d, -127, 127)).ToArray();
                    for (int g = 0; g < 16; g++) o[at + 192 + g] = (byte)(sbyte)sc[g];
                    for (int e = 0; e < 256; e++)
                    {
                        float step = d * sc[e / 16];
                        int q = step == 0 ? 32 : Clamp(x[e] / step + 32, 0, 63);
                        int n = e / 128, i = e / 32 % 4, l = e % 32;
                        int qlAt = at + 64 * n + l + 32 * (i & 1);
                        o[qlAt] |= (byte)(i < 2 ? q & 0xF : (q & 0xF) << 4);
                        o[at + 128 + 32 * n + l] |= (byte)((q >> 4) << (2 * i));
                    }
                    break;
                }
            default: throw new ArgumentException(t.ToString());
        }
    }

    private static void PackNibbles(int[] q, byte[] o, int at)
    {
        for (int j = 0; j < 16; j++) o[at + j] = (byte)((q[j] & 0xF) | (q[j + 16] & 0xF) << 4);
    }

    private static void PackFifthBits(int[] q, byte[] o, int at)
    {
        uint qh = 0;
        for (int j = 0; j < 32; j++) qh |= (uint)(q[j] >> 4 & 1) << j;
        BinaryPrimitives.WriteUInt32LittleEndian(o.AsSpan(at), qh);
    }

    /// <summary>Value e of the blocks, by the format's formula, one value at a time.</summary>
    public static float Value(GgufType t, byte[] blocks, long e)
    {
        int values = BlockValues(t);
        long at = e / values * BlockBytes(t);
        int i = (int)(e % values);
        int Nibble(long qs, int j) => j < 16 ? blocks[qs + j] & 0xF : blocks[qs + j - 16] >> 4;
        int FifthBit(long qh, int j) => (int)(BinaryPrimitives.ReadUInt32LittleEndian(blocks.AsSpan((int)qh)) >> j & 1);
        switch (t)
        {
            case GgufType.Q8_0: return GetHalf(blocks, at) * (sbyte)blocks[at + 2 + i];
            case GgufType.Q4_0: return GetHalf(blocks, at) * (Nibble(at + 2, i) - 8);
            case GgufType.Q4_1: return GetHalf(blocks, at) * Nibble(at + 4, i) + GetHalf(blocks, at + 2);
            case GgufType.Q5_0: return GetHalf(blocks, at) * ((Nibble(at + 6, i) | FifthBit(at + 2, i) << 4) - 16);
            case GgufType.Q5_1: return GetHalf(blocks, at) * (Nibble(at + 8, i) | FifthBit(at + 4, i) << 4) + GetHalf(blocks, at + 2);
            case GgufType.Q4_K or GgufType.Q5_K:
                {
                    int j = i / 32, c = i / 64, l = i % 32;
                    long sc = at + 4;
                    int scale = j < 4 ? blocks[sc + j] & 63 : (blocks[sc + j + 4] & 0xF) | (blocks[sc + j - 4] >> 6) << 4;
                    int min = j < 4 ? blocks[sc + j + 4] & 63 : (blocks[sc + j + 4] >> 4) | (blocks[sc + j] >> 6) << 4;
                    bool five = t == GgufType.Q5_K;
                    int packed = blocks[at + (five ? 48 : 16) + 32 * c + l];
                    int q = (j % 2 == 0 ? packed & 0xF : packed >> 4) + (five ? (blocks[at + 16 + l] >> j & 1) * 16 : 0);
                    return GetHalf(blocks, at) * scale * q - GetHalf(blocks, at + 2) * min;
                }
            case GgufType.Q6_K:
                {
                    int n = i / 128, quarter = i / 32 % 4, l = i % 32;
                    int low = blocks[at + 64 * n + l + 32 * (quarter & 1)];
                    int q = (quarter < 2 ? low & 0xF : low >> 4) | (blocks[at + 128 + 32 * n + l] >> 2 * quarter & 3) << 4;
                    return GetHalf(blocks, at + 208) * (sbyte)blocks[at + 192 + i / 16] * (q - 32);
                }
            default: throw new ArgumentException(t.ToString());
        }
    }

    public static float[] Dequantize(GgufType t, byte[] blocks, long count)
    {
        var y = new float[count];
        for (long e = 0; e < count; e++) y[e] = Value(t, blocks, e);
        return y;
    }
}
