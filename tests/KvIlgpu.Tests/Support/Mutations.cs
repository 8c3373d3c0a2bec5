namespace KvIlgpu.Tests.Support;

/// <summary>The byte-level mutations the fuzz suites draw from: each returns the damaged copy and what was done, so a
/// failing case can say how to replay it.</summary>
internal static class Mutations
{
    /// <summary>One to eight single-bit flips anywhere.</summary>
    public static (byte[], string) BitFlips(byte[] original, Random rng)
    {
        var b = (byte[])original.Clone();
        int flips = rng.Next(1, 9);
        for (int k = 0; k < flips; k++) b[rng.Next(b.Length)] ^= (byte)(1 << rng.Next(8));
        return (b, $"{flips} bit flips");
    }

    /// <summary>The file cut at a random length.</summary>
    public static (byte[], string) Truncation(byte[] original, Random rng)
    {
        int length = rng.Next(original.Length);
        return (original[..length], $"truncated to {length} bytes");
    }

    /// <summary>One byte of the first 512 (the header) set to a random value.</summary>
    public static (byte[], string) HeaderByte(byte[] original, Random rng)
    {
        var b = (byte[])original.Clone();
        int at = rng.Next(Math.Min(b.Length, 512));
        b[at] = (byte)rng.Next(256);
        return (b, $"header byte {at} set");
    }

    /// <summary>A 32-bit field (at a multiple of 4 among the first 256 bytes, or anywhere) set to one of the extremes.</summary>
    public static (byte[], string) Int32Field(byte[] original, Random rng, int[] extremes, bool headerOnly)
    {
        var b = (byte[])original.Clone();
        int at = headerOnly ? rng.Next(Math.Min(b.Length, 256) / 4) * 4 : rng.Next(Math.Max(1, b.Length - 4));
        int v = extremes[rng.Next(extremes.Length)];
        at = Math.Min(at, b.Length - 4);
        BitConverter.GetBytes(v).CopyTo(b, at);
        return (b, $"int32 at {at} set to {v}");
    }

    /// <summary>A 64-bit field among the first 512 bytes set to one of the extremes.</summary>
    public static (byte[], string) Int64Field(byte[] original, Random rng, long[] extremes)
    {
        var b = (byte[])original.Clone();
        int at = rng.Next(Math.Max(1, Math.Min(b.Length, 512) - 8));
        long v = extremes[rng.Next(extremes.Length)];
        BitConverter.GetBytes(v).CopyTo(b, at);
        return (b, $"int64 at {at} set to {v}");
    }
}
