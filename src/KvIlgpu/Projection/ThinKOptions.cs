namespace KvIlgpu.Projection;

/// <summary>ThinK (Xu et al., "ThinK: Thinner Key Cache by Query-Driven Pruning", arXiv 2407.21018), the training-free
/// baseline of the feature axis: when a request's prompt has been prefilled, each (layer, KV head) scores every key
/// channel c by ||Q_w[:, c]|| x ||K[:, c]|| (Q_w the last ObservationWindow prompt queries of the head's query group, K
/// the head's cached keys, both after RoPE) and keeps the KeptShare of channels that score highest; the others are
/// zeroed in the cached keys and in every key the request writes after, so q.k sums over the kept channels only (as
/// NVIDIA kvpress's ThinKPress prunes). Values are kept whole, as in the paper: the request keeps
/// (KeptShare + 1) / 2 of the feature dims of its KV bytes.</summary>
/// <param name="KeptShare">Share of key channels kept per head, in (0, 1]; round(KeptShare x head_dim), at least 1.</param>
/// <param name="ObservationWindow">Last prompt queries that score the channels (the paper's and SnapKV's 32).</param>
public sealed record ThinKOptions(double KeptShare, int ObservationWindow = 32)
{
    /// <summary>Throws <see cref="InvalidOptionException"/> naming the first bad value.</summary>
    public void Validate()
    {
        if (!(KeptShare is > 0 and <= 1))
            throw new InvalidOptionException(nameof(KeptShare),
                $"{nameof(KeptShare)} must be in (0, 1] (ThinK's kept share of key channels), got {KeptShare}");
        if (ObservationWindow < 1)
            throw new InvalidOptionException(nameof(ObservationWindow),
                $"ThinK's {nameof(ObservationWindow)} must be at least 1, got {ObservationWindow}");
    }

    /// <summary>The key channels kept per head of width headDim.</summary>
    public int KeptChannels(int headDim) => KvProjection.UniformRank(KeptShare, headDim);

    /// <summary>The share of a request's feature dims (keys and values together) that ThinK keeps.</summary>
    public double FeatureShare(int headDim) => (KeptChannels(headDim) + headDim) / (2.0 * headDim);

    /// <summary>Each (layer, KV head)'s channel mask (1 kept, 0 pruned), [layer][head * d + c], from the window queries
    /// (queries[layer]: rows of [Heads * d]) and the cached keys (keys[layer][head]: rows of [d]); ties go to the lower
    /// channel.</summary>
    public float[][] Masks(IReadOnlyList<IReadOnlyList<float[]>> queries, IReadOnlyList<IReadOnlyList<float[][]>> keys, int heads,
        int kvHeads, int d)
    {
        int group = heads / kvHeads, keep = KeptChannels(d);
        var masks = new float[queries.Count][];
        for (int l = 0; l < queries.Count; l++)
        {
            masks[l] = new float[kvHeads * d];
            for (int h = 0; h < kvHeads; h++)
            {
                var score = new double[d];
                for (int c = 0; c < d; c++)
                {
                    double q2 = 0, k2 = 0;
                    foreach (var q in queries[l])
                        for (int g = h * group; g < (h + 1) * group; g++) q2 += (double)q[g * d + c] * q[g * d + c];
                    foreach (var k in keys[l][h]) k2 += (double)k[c] * k[c];
                    score[c] = Math.Sqrt(q2) * Math.Sqrt(k2);
                }
                foreach (int c in Enumerable.Range(0, d).OrderByDescending(c => score[c]).ThenBy(c => c).Take(keep))
                    masks[l][h * d + c] = 1;
            }
        }
        return masks;
    }
}
