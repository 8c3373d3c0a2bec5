using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace KvIlgpu.Compute;

/// <summary>An activation row quantised to 8 bits for integer dot products with ggml-quantised weights, as llama.cpp
/// quantises activations: blocks of 32 values (q8_0, for weights in blocks of 32) or 256 (q8_K, for the k-quants'
/// super-blocks) with one f32 scale each (max |x| / 127, round to nearest, ties to even), plus the sum of the codes of
/// every 16 and every 32 values, which formats with an offset or a minimum need
/// (sum_i (q_i - c) x_i = sum_i q_i x_i - c sum_i x_i).</summary>
internal sealed class QuantizedActivation
{
    /// <summary>Values per block: 32 or 256.</summary>
    public readonly int BlockSize;
    /// <summary>Codes, one per value.</summary>
    public readonly sbyte[] Codes;
    /// <summary>Scale of each block: value ≈ scale * code.</summary>
    public readonly float[] Scales;
    /// <summary>Sum of the codes of each group of 16 values (at most 16 x 127, so 16 bits hold it).</summary>
    public readonly short[] Sums16;
    /// <summary>Sum of the codes of each group of 32 values (at most 32 x 127).</summary>
    public readonly short[] Sums32;
    /// <summary>Sum of each group of 32 values as the codes give it (Sums32 times the block's scale).</summary>
    public readonly float[] ScaledSums32;

    public QuantizedActivation(int length, int blockSize)
    {
        BlockSize = blockSize;
        Codes = new sbyte[length];
        Scales = new float[length / blockSize];
        Sums16 = new short[length / 16];
        Sums32 = new short[length / 32];
        ScaledSums32 = new float[length / 32];
    }

    /// <summary>Quantises x (its length a multiple of the block size, the length this was made for).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Quantize(ReadOnlySpan<float> x)
    {
        if (x.Length != Codes.Length) throw new ArgumentException($"expected {Codes.Length} values, got {x.Length}", nameof(x));
        for (int b = 0; b < Scales.Length; b++)
        {
            var block = x.Slice(BlockSize * b, BlockSize);
            float amax = MathF.Abs(TensorPrimitives.MaxMagnitude(block));
            float scale = amax / 127f, inverse = scale == 0 ? 0 : 1f / scale;
            Scales[b] = scale;
            if (Avx.IsSupported) QuantizeBlock256(block, inverse, Codes.AsSpan(BlockSize * b, BlockSize));
            else
                for (int i = 0; i < BlockSize; i++) Codes[BlockSize * b + i] = (sbyte)(int)MathF.Round(block[i] * inverse);
        }
        for (int g = 0; g < Sums16.Length; g++)
        {
            int sum = 0;
            for (int i = 16 * g; i < 16 * g + 16; i++) sum += Codes[i];
            Sums16[g] = (short)sum;
        }
        for (int g = 0; g < Sums32.Length; g++)
        {
            Sums32[g] = (short)(Sums16[2 * g] + Sums16[2 * g + 1]);
            ScaledSums32[g] = Scales[32 * g / BlockSize] * Sums32[g];
        }
    }

    /// <summary>Codes of one block (a multiple of 32 values), 32 a pass: x times the inverse scale, converted by
    /// vcvtps2dq, which rounds to nearest with ties to even as MathF.Round does, narrowed to bytes (every code is within
    /// -127..127).</summary>
    private static void QuantizeBlock256(ReadOnlySpan<float> block, float inverse, Span<sbyte> codes)
    {
        ref float x = ref MemoryMarshal.GetReference(block);
        ref sbyte q = ref MemoryMarshal.GetReference(codes);
        var scale = Vector256.Create(inverse);
        for (int i = 0; i < block.Length; i += 32)
        {
            var a = Avx.ConvertToVector256Int32(Vector256.LoadUnsafe(ref x, (nuint)i) * scale);
            var b = Avx.ConvertToVector256Int32(Vector256.LoadUnsafe(ref x, (nuint)i + 8) * scale);
            var c = Avx.ConvertToVector256Int32(Vector256.LoadUnsafe(ref x, (nuint)i + 16) * scale);
            var d = Avx.ConvertToVector256Int32(Vector256.LoadUnsafe(ref x, (nuint)i + 24) * scale);
            Vector256.Narrow(Vector256.Narrow(a, b), Vector256.Narrow(c, d)).StoreUnsafe(ref q, (nuint)i);
        }
    }
}
