namespace KvIlgpu.Compute;

/// <summary>An activation row quantised to 8 bits for integer dot products with ggml-quantised weights, as llama.cpp
/// quantises activations to q8_0/q8_K: blocks of 32 values with one f32 scale (max |x| / 127, round to nearest), plus the
/// scaled sum of the codes of every 16 values, which the weight formats with an offset or a minimum need
/// (sum_i (q_i - c) x_i = sum_i q_i x_i - c sum_i x_i). Blocks of 32 rather than q8_K's 256 keep the rounding error per
/// value at most half of max |x| / 127 over 32 neighbours.</summary>
internal sealed class QuantizedActivation
{
    /// <summary>Codes, one per value.</summary>
    public readonly sbyte[] Codes;
    /// <summary>Scale of each block of 32: value ≈ scale * code.</summary>
    public readonly float[] Scales;
    /// <summary>scale * (sum of the 16 codes) for each group of 16 values.</summary>
    public readonly float[] ScaledSums16;

    public QuantizedActivation(int length)
    {
        Codes = new sbyte[length];
        Scales = new float[length / 32];
        ScaledSums16 = new float[length / 16];
    }

    /// <summary>Quantises x (its length a multiple of 32, the length this was made for).</summary>
    public void Quantize(ReadOnlySpan<float> x)
    {
        for (int b = 0; b < Scales.Length; b++)
        {
            var block = x.Slice(32 * b, 32);
            float amax = System.Numerics.Tensors.TensorPrimitives.MaxMagnitude(block);
            amax = MathF.Abs(amax);
            float scale = amax / 127f, inverse = scale == 0 ? 0 : 1f / scale;
            int sum0 = 0, sum1 = 0;
            for (int i = 0; i < 32; i++)
            {
                int q = (int)MathF.Round(block[i] * inverse);
                Codes[32 * b + i] = (sbyte)q;
                if (i < 16) sum0 += q; else sum1 += q;
            }
            Scales[b] = scale;
            ScaledSums16[2 * b] = scale * sum0;
            ScaledSums16[2 * b + 1] = scale * sum1;
        }
    }
}
