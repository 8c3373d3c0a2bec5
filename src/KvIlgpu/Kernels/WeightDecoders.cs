using ILGPU;

namespace KvIlgpu.Kernels;

/// <summary>Turns one stored weight element (at a flat index, row * cols + col) into f32 inside a kernel. Kernels are
/// generic over the decoder, so f32, f16, bf16 and ggml's block formats (<see cref="QuantDecoders"/>) share one kernel
/// body and are read from memory at their stored size.</summary>
internal interface IWeightDecoder<T> where T : unmanaged
{
    float Decode(ArrayView<T> w, long index);
}

internal struct F32Decoder : IWeightDecoder<float>
{
    public readonly float Decode(ArrayView<float> w, long index) => w[index];
}

/// <summary>bf16 is the top half of an f32.</summary>
internal struct BF16Decoder : IWeightDecoder<ushort>
{
    public readonly float Decode(ArrayView<ushort> w, long index) => Interop.IntAsFloat((uint)w[index] << 16);
}

/// <summary>IEEE half: exponent and mantissa shifted into f32 position, rescaled by 2^112 (exact for normal and
/// subnormal values), sign put back.</summary>
internal struct F16Decoder : IWeightDecoder<ushort>
{
    public readonly float Decode(ArrayView<ushort> w, long index) => FromBits(w[index]);

    public static float FromBits(uint h)
    {
        float magnitude = Interop.IntAsFloat((h & 0x7FFFu) << 13) * 5.192297e+33f;
        return Interop.IntAsFloat(Interop.FloatAsInt(magnitude) | ((h & 0x8000u) << 16));
    }
}
