using ILGPU;

namespace KvIlgpu.Kernels;

/// <summary>Turns one stored weight element into f32 inside a kernel. Kernels are generic over the decoder, so
/// f32, f16 and bf16 weights share one kernel body and are read from memory at their stored size.</summary>
internal interface IWeightDecoder<T> where T : unmanaged
{
    float Decode(T raw);
}

internal struct F32Decoder : IWeightDecoder<float>
{
    public readonly float Decode(float raw) => raw;
}

/// <summary>bf16 is the top half of an f32.</summary>
internal struct BF16Decoder : IWeightDecoder<ushort>
{
    public readonly float Decode(ushort raw) => Interop.IntAsFloat((uint)raw << 16);
}

/// <summary>IEEE half: exponent and mantissa shifted into f32 position, rescaled by 2^112 (exact for normal and
/// subnormal values), sign put back.</summary>
internal struct F16Decoder : IWeightDecoder<ushort>
{
    public readonly float Decode(ushort raw)
    {
        uint h = raw;
        float magnitude = Interop.IntAsFloat((h & 0x7FFFu) << 13) * 5.192297e+33f;
        return Interop.IntAsFloat(Interop.FloatAsInt(magnitude) | ((h & 0x8000u) << 16));
    }
}
