namespace KvIlgpu.Kernels;

/// <summary>SPEC 2's average variant as the device applies it: a KV at position p is ranked by its metric divided by the
/// number of queries that could see it, the prefill window's queries at or after p plus, when the metric accumulates
/// during decode, every decode query since. Enabled 0 ranks by the metric itself. The same arithmetic as the host's
/// <c>SequenceCompressor.Averaged</c>, so both plans agree exactly.</summary>
internal readonly struct MetricAverage
{
    public readonly int Enabled, PromptLength, Window, SequenceLength, Decode;

    public MetricAverage(bool enabled, int promptLength, int window, int sequenceLength, bool decode)
    {
        Enabled = enabled ? 1 : 0;
        PromptLength = promptLength;
        Window = window;
        SequenceLength = sequenceLength;
        Decode = decode ? 1 : 0;
    }

    /// <summary>How many queries could see the KV at position p (at least 1).</summary>
    public int Seen(int p)
    {
        int windowStart = PromptLength - Window;
        int prefill = p < PromptLength ? PromptLength - (p > windowStart ? p : windowStart) : 0;
        int decodeStart = p > PromptLength ? p : PromptLength;
        int decode = Decode != 0 && SequenceLength > decodeStart ? SequenceLength - decodeStart : 0;
        int seen = prefill + decode;
        return seen > 1 ? seen : 1;
    }

    /// <summary>The score a metric ranks by.</summary>
    public float Score(float metric, int p) => Enabled != 0 ? metric / Seen(p) : metric;
}
