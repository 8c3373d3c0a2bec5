using ILGPU;

namespace KvIlgpu.Kernels;

/// <summary>ggml's block formats decoded one element at a time inside a kernel, from the raw blocks as the file holds
/// them (the layouts are in <see cref="Models.Quantization.QuantFormats"/>). A row's length is a whole number of
/// blocks, so the flat index alone finds the block: block = index / values per block. The scales a thread reads are
/// the ones its neighbours read, so they come from cache.</summary>
internal static class QuantDecoders
{
    public static float Half(ArrayView<byte> w, long at) => F16Decoder.FromBits((uint)(w[at] | w[at + 1] << 8));

    public static uint UInt32(ArrayView<byte> w, long at) =>
        (uint)(w[at] | w[at + 1] << 8 | w[at + 2] << 16 | w[at + 3] << 24);

    /// <summary>Value j (0-31) of a q4_0/q4_1 style nibble array at qs: low nibbles are values 0-15, high ones 16-31.</summary>
    public static int Nibble(ArrayView<byte> w, long qs, int j) => j < 16 ? w[qs + j] & 0xF : w[qs + j - 16] >> 4;

    /// <summary>q4_K/q5_K: sub-block j's 6-bit scale (min: false) or minimum (min: true) from the 12 bytes at at.</summary>
    public static int ScaleOrMin(ArrayView<byte> w, long at, int j, bool min)
    {
        if (j < 4) return w[at + j + (min ? 4 : 0)] & 63;
        int packed = w[at + j + 4];
        return (min ? packed >> 4 : packed & 0xF) | (w[at + j - (min ? 0 : 4)] >> 6) << 4;
    }

    /// <summary>q4_K and q5_K value index (0-255) of the super-block at at.</summary>
    public static float KQuant(ArrayView<byte> w, long at, int index, bool five)
    {
        int c = index / 64, half = index / 32 % 2, l = index % 32, sub = 2 * c + half;
        int packed = w[at + (five ? 48 : 16) + 32 * c + l];
        int q = half == 0 ? packed & 0xF : packed >> 4;
        if (five) q |= (w[at + 16 + l] >> sub & 1) << 4;
        return Half(w, at) * ScaleOrMin(w, at + 4, sub, false) * q - Half(w, at + 2) * ScaleOrMin(w, at + 4, sub, true);
    }
}

internal struct Q8_0Decoder : IWeightDecoder<byte>
{
    public readonly float Decode(ArrayView<byte> w, long index)
    {
        long at = index / 32 * 34;
        return QuantDecoders.Half(w, at) * (sbyte)w[at + 2 + index % 32];
    }
}

internal struct Q4_0Decoder : IWeightDecoder<byte>
{
    public readonly float Decode(ArrayView<byte> w, long index)
    {
        long at = index / 32 * 18;
        return QuantDecoders.Half(w, at) * (QuantDecoders.Nibble(w, at + 2, (int)(index % 32)) - 8);
    }
}

internal struct Q4_1Decoder : IWeightDecoder<byte>
{
    public readonly float Decode(ArrayView<byte> w, long index)
    {
        long at = index / 32 * 20;
        return QuantDecoders.Half(w, at) * QuantDecoders.Nibble(w, at + 4, (int)(index % 32)) + QuantDecoders.Half(w, at + 2);
    }
}

/// <summary>q5_0: bit j of the 32-bit qh is value j's fifth bit.</summary>
internal struct Q5_0Decoder : IWeightDecoder<byte>
{
    public readonly float Decode(ArrayView<byte> w, long index)
    {
        long at = index / 32 * 22;
        int j = (int)(index % 32);
        int q = QuantDecoders.Nibble(w, at + 6, j) | (int)(QuantDecoders.UInt32(w, at + 2) >> j & 1) << 4;
        return QuantDecoders.Half(w, at) * (q - 16);
    }
}

internal struct Q5_1Decoder : IWeightDecoder<byte>
{
    public readonly float Decode(ArrayView<byte> w, long index)
    {
        long at = index / 32 * 24;
        int j = (int)(index % 32);
        int q = QuantDecoders.Nibble(w, at + 8, j) | (int)(QuantDecoders.UInt32(w, at + 4) >> j & 1) << 4;
        return QuantDecoders.Half(w, at) * q + QuantDecoders.Half(w, at + 2);
    }
}

internal struct Q4_KDecoder : IWeightDecoder<byte>
{
    public readonly float Decode(ArrayView<byte> w, long index) =>
        QuantDecoders.KQuant(w, index / 256 * 144, (int)(index % 256), five: false);
}

internal struct Q5_KDecoder : IWeightDecoder<byte>
{
    public readonly float Decode(ArrayView<byte> w, long index) =>
        QuantDecoders.KQuant(w, index / 256 * 176, (int)(index % 256), five: true);
}

/// <summary>q6_K: value 128 n + 32 i + l of a super-block takes a nibble of ql[64 n + l + 32 (i mod 2)] (low for i &lt; 2)
/// and bits 2i, 2i+1 of qh[32 n + l]; its int8 scale is scales[8 n + 2 i + l / 16].</summary>
internal struct Q6_KDecoder : IWeightDecoder<byte>
{
    public readonly float Decode(ArrayView<byte> w, long index)
    {
        long at = index / 256 * 210;
        int e = (int)(index % 256), n = e / 128, i = e / 32 % 4, l = e % 32;
        int low = w[at + 64 * n + l + 32 * (i & 1)];
        int q = (i < 2 ? low & 0xF : low >> 4) | (w[at + 128 + 32 * n + l] >> 2 * i & 3) << 4;
        return QuantDecoders.Half(w, at + 208) * (sbyte)w[at + 192 + 8 * n + 2 * i + l / 16] * (q - 32);
    }
}
