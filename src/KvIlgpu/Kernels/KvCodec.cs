using ILGPU;

namespace KvIlgpu.Kernels;

/// <summary>How one cached row (a token's key or value in one head) is packed into 32-bit words of the K and V pools, for
/// each <see cref="Cache.KvStorageType"/>: f32 one word per feature; f16 and bf16 two per word, feature 2i in the low
/// half; q8 four signed bytes per word, feature 4i in the lowest byte, times the row's scale. The layout is the
/// little-endian byte order of the plain arrays (Half[], sbyte[]), so host code may view a row as such. Kernels and
/// host code share these methods; the types are passed to kernels as ints (the enum's values).</summary>
internal static class KvCodec
{
    public const int F32 = (int)Cache.KvStorageType.F32, F16 = (int)Cache.KvStorageType.F16,
        BF16 = (int)Cache.KvStorageType.BF16, Q8 = (int)Cache.KvStorageType.Q8;

    /// <summary>Features one 32-bit word holds.</summary>
    public static int PerWord(int type) => type == F32 ? 1 : type == Q8 ? 4 : 2;

    /// <summary>Words of one row of width features.</summary>
    public static int Words(int type, int width) => (width + PerWord(type) - 1) / PerWord(type);

    /// <summary>Bytes one feature takes.</summary>
    public static int ElementBytes(int type) => 4 / PerWord(type);

    /// <summary>Feature i of the row starting at word rowWord, widened to f32 (scale: the row's q8 scale, else unused).</summary>
    public static float Load(ArrayView<int> pool, long rowWord, int i, int type, float scale)
    {
        if (type == F32) return Interop.IntAsFloat((uint)pool[rowWord + i]);
        if (type == Q8) return ((pool[rowWord + (i >> 2)] << (24 - 8 * (i & 3))) >> 24) * scale;
        int bits = (pool[rowWord + (i >> 1)] >> (16 * (i & 1))) & 0xFFFF;
        return type == BF16 ? Interop.IntAsFloat((uint)bits << 16) : HalfToFloat(bits);
    }

    /// <summary>The q8 scale of a row: its largest magnitude over 127 (0 for a zero row).</summary>
    public static float Q8Scale(float maxAbs) => maxAbs / 127f;

    /// <summary>The int8 code of x at a row's scale: round to nearest (halves away from zero), clamped to ±127.</summary>
    public static int Q8Code(float x, float scale)
    {
        if (scale == 0f) return 0;
        float q = x / scale;
        int c = (int)(q + (q >= 0f ? 0.5f : -0.5f));
        return c > 127 ? 127 : c < -127 ? -127 : c;
    }

    /// <summary>Bits of one feature as stored (f16 or bf16: 16 bits; q8: the code's low byte; f32: the float's bits).</summary>
    public static int Encode(float x, int type, float scale) =>
        type == F32 ? (int)Interop.FloatAsInt(x) : type == F16 ? FloatToHalf(x) : type == BF16 ? FloatToBFloat16(x)
            : Q8Code(x, scale) & 0xFF;

    /// <summary>IEEE half bits to f32 (exact, with subnormals, infinities and NaN).</summary>
    public static float HalfToFloat(int bits)
    {
        uint h = (uint)bits;
        uint sign = (h & 0x8000u) << 16;
        if ((h & 0x7C00u) == 0x7C00u) return Interop.IntAsFloat(sign | 0x7F800000u | ((h & 0x3FFu) << 13));
        // Exponent and mantissa moved to f32 position and rescaled by 2^112: exact for normal and subnormal halves.
        float magnitude = Interop.IntAsFloat((h & 0x7FFFu) << 13) * 5.192297e+33f;
        return Interop.IntAsFloat(Interop.FloatAsInt(magnitude) | sign);
    }

    /// <summary>f32 to IEEE half bits, rounded to nearest even; beyond the largest half (65504, and its rounding range)
    /// infinity; NaN stays NaN.</summary>
    public static int FloatToHalf(float x)
    {
        uint u = Interop.FloatAsInt(x);
        uint sign = (u >> 16) & 0x8000u, a = u & 0x7FFFFFFFu;
        if (a > 0x7F800000u) return (int)(sign | 0x7E00u);
        if (a >= 0x477FF000u) return (int)(sign | 0x7C00u); // rounds to 65520 or more (or is infinite)
        if (a >= 0x38800000u) // a normal half: drop 13 mantissa bits, rounding to even (a carry moves into the exponent)
            return (int)(sign | ((a - 0x38000000u + 0xFFFu + ((a >> 13) & 1u)) >> 13));
        if (a <= 0x33000000u) return (int)sign; // at most half the smallest subnormal: rounds to zero
        // A subnormal half: the value in units of 2^-24, rounded to even.
        uint mantissa = (a & 0x7FFFFFu) | 0x800000u;
        int shift = 126 - (int)(a >> 23);
        uint q = mantissa >> shift, rest = mantissa & ((1u << shift) - 1u), half = 1u << (shift - 1);
        if (rest > half || (rest == half && (q & 1u) != 0)) q++;
        return (int)(sign | q);
    }

    /// <summary>f32 to bfloat16 bits, rounded to nearest even; NaN stays NaN.</summary>
    public static int FloatToBFloat16(float x)
    {
        uint u = Interop.FloatAsInt(x);
        if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (int)((u >> 16) | 0x40u);
        return (int)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
    }

    /// <summary>Packs one row (width features of src from srcOffset) into words of dst from dstWord; the q8 scale is
    /// computed from the row and returned (1 for other types). One thread per row: words are written whole.</summary>
    public static float StoreRow(ArrayView<float> src, long srcOffset, int width, ArrayView<int> dst, long dstWord, int type)
    {
        float scale = 1f;
        if (type == Q8)
        {
            float max = 0f;
            for (int i = 0; i < width; i++) { float a = src[srcOffset + i]; max = a > max ? a : -a > max ? -a : max; }
            scale = Q8Scale(max);
        }
        int per = PerWord(type), bits = 32 / per;
        for (int w = 0; w < Words(type, width); w++)
        {
            int word = 0;
            for (int j = 0; j < per; j++)
            {
                int i = w * per + j;
                if (i < width) word |= Encode(src[srcOffset + i], type, scale) << (bits * j);
            }
            dst[dstWord + w] = word;
        }
        return scale;
    }

    /// <summary>Host form of <see cref="StoreRow(ArrayView{float}, long, int, ArrayView{int}, long, int)"/>: packs src into
    /// dst (Words(type, src.Length) words) and returns the q8 scale (1 for other types).</summary>
    public static float StoreRow(ReadOnlySpan<float> src, Span<int> dst, int type)
    {
        float scale = 1f;
        if (type == Q8)
        {
            float max = 0f;
            foreach (var x in src) max = MathF.Max(max, MathF.Abs(x));
            scale = Q8Scale(max);
        }
        int per = PerWord(type), bits = 32 / per;
        for (int w = 0; w < Words(type, src.Length); w++)
        {
            int word = 0;
            for (int j = 0; j < per && w * per + j < src.Length; j++) word |= Encode(src[w * per + j], type, scale) << (bits * j);
            dst[w] = word;
        }
        return scale;
    }

    /// <summary>Host form of <see cref="Load"/> for a whole row: widens dst.Length features of the packed row src.</summary>
    public static void LoadRow(ReadOnlySpan<int> src, float scale, Span<float> dst, int type)
    {
        for (int i = 0; i < dst.Length; i++)
        {
            int w = src[i / PerWord(type)];
            dst[i] = type == F32 ? BitConverter.Int32BitsToSingle(w)
                : type == Q8 ? ((w << (24 - 8 * (i & 3))) >> 24) * scale
                : type == BF16 ? BitConverter.Int32BitsToSingle(((w >> (16 * (i & 1))) & 0xFFFF) << 16)
                : HalfToFloat((w >> (16 * (i & 1))) & 0xFFFF);
        }
    }
}
