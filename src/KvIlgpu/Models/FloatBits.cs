namespace KvIlgpu.Models;

/// <summary>Bit-level conversions between f32 and the 16-bit float formats.</summary>
internal static class FloatBits
{
    public static float FromBFloat16(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    public static ushort ToBFloat16(float value)
    {
        uint u = BitConverter.SingleToUInt32Bits(value);
        if ((u & 0x7FFFFFFF) > 0x7F800000) return (ushort)((u >> 16) | 0x40); // quiet NaN
        uint rounding = 0x7FFF + ((u >> 16) & 1);
        return (ushort)((u + rounding) >> 16);
    }

    public static float FromHalf(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);
}
