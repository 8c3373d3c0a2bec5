namespace KvIlgpu.Models;

/// <summary>RoPE rotation angles for every position: cos and sin tables of [MaxSeqLen, HeadDim/2],
/// with the model's frequency scaling applied. Index i is the i-th frequency, theta^(-2i/d).</summary>
internal sealed class RopeTable
{
    public int Positions { get; }
    public int HalfDim { get; }
    public float[] Cos { get; }
    public float[] Sin { get; }

    public RopeTable(ModelConfig config)
    {
        Positions = config.MaxSeqLen;
        HalfDim = config.HeadDim / 2;
        var freqs = Frequencies(config);
        Cos = new float[Positions * HalfDim];
        Sin = new float[Positions * HalfDim];
        for (int p = 0; p < Positions; p++)
            for (int i = 0; i < HalfDim; i++)
            {
                // Angles in f32, as the reference implementations compute them.
                float angle = p * freqs[i];
                Cos[p * HalfDim + i] = MathF.Cos(angle);
                Sin[p * HalfDim + i] = MathF.Sin(angle);
            }
    }

    /// <summary>The inverse frequencies theta^(-2i/d), rescaled as rope_scaling says.</summary>
    public static float[] Frequencies(ModelConfig config)
    {
        int half = config.HeadDim / 2;
        var freqs = new float[half];
        for (int i = 0; i < half; i++)
            freqs[i] = 1.0f / MathF.Pow(config.RopeTheta, 2 * i / (float)config.HeadDim);
        var s = config.RopeScaling;
        if (s == null) return freqs;
        switch (s.Type)
        {
            case "linear":
                for (int i = 0; i < half; i++) freqs[i] /= s.Factor;
                break;
            case "llama3":
                double lowWavelen = s.OriginalMaxPositionEmbeddings / (double)s.LowFreqFactor;
                double highWavelen = s.OriginalMaxPositionEmbeddings / (double)s.HighFreqFactor;
                for (int i = 0; i < half; i++)
                {
                    double f = freqs[i];
                    double wavelen = 2 * Math.PI / f;
                    if (wavelen < highWavelen) continue;
                    if (wavelen > lowWavelen) { freqs[i] = (float)(f / s.Factor); continue; }
                    double smooth = (s.OriginalMaxPositionEmbeddings / wavelen - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
                    freqs[i] = (float)((1 - smooth) * f / s.Factor + smooth * f);
                }
                break;
            default:
                throw new NotSupportedException($"rope_scaling type '{s.Type}' is not supported (supported: llama3, linear)");
        }
        return freqs;
    }
}
