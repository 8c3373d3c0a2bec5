using KvIlgpu.Models;
using KvIlgpu.Projection;

namespace KvIlgpu.Tests.Support;

/// <summary>A deliberately plain forward pass, written straight from the llama2.c / Hugging Face definitions with
/// scalar loops in double precision and its own RoPE. It shares no code with the engine's kernels, so agreement
/// with it is evidence, not tautology. Weights are taken in llama2.c layout (interleaved-pair RoPE).</summary>
internal sealed class ReferenceLlama
{
    public int Dim, Hidden, Layers, Heads, KvHeads, Vocab, HeadDim;
    public float Eps = 1e-5f, Theta = 10000f;
    public float[] Emb = [], FinalNorm = [], Output = [];
    public float[][] AttNorm = [], Wq = [], Wk = [], Wv = [], Wo = [], FfnNorm = [], W1 = [], W2 = [], W3 = [];
    public float[][]? Bq, Bk, Bv;

    private readonly List<double[][]> _keys = [], _values = [];

    /// <summary>MatryoshkaKV written out as SPEC section 5 states it (null: none): the cache holds each head's r_K
    /// coordinates (k - mu_K) U_K[:, :r_K] and r_V coordinates (v - mu_V) U_V[:, :r_V]; queries are projected with U_K
    /// without centring, scores keep the full head's 1/sqrt(d), and a head's output is (p V') U_V[:, :r_V]^T + mu_V.</summary>
    public KvProjection? Projection;

    /// <summary>The queries (after RoPE) of the last Step, per layer [Heads * HeadDim].</summary>
    public double[][] LastQueries = [];

    private double[][]? _keyMask;

    /// <summary>ThinK's pruning written out: multiplies every cached key of each layer by mask[layer] ([KvHeads *
    /// HeadDim]) now, and every key of later steps too.</summary>
    public void MaskKeys(double[][] mask)
    {
        _keyMask = mask;
        for (int l = 0; l < _keys.Count; l++)
            foreach (var k in _keys[l]) for (int i = 0; i < k.Length; i++) k[i] *= mask[l][i];
    }

    /// <summary>The attention probabilities of the last Step: [layer][query head][key position].</summary>
    public double[][][] LastProbabilities = []; // per layer: list of [kvDim] per position

    public static ReferenceLlama From(LlamaWeights w)
    {
        var c = w.Config;
        if (c.RopeLayout != RopeLayout.InterleavedPairs) throw new ArgumentException("reference expects llama2.c layout");
        return new ReferenceLlama
        {
            Dim = c.Dim, Hidden = c.HiddenDim, Layers = c.Layers, Heads = c.Heads, KvHeads = c.KvHeads, Vocab = c.VocabSize,
            HeadDim = c.HeadDim, Eps = c.RmsNormEps, Theta = c.RopeTheta,
            Emb = w.TokenEmbedding.ToFloat(), FinalNorm = w.FinalNorm.ToFloat(), Output = w.Output.ToFloat(),
            AttNorm = w.Layers.Select(l => l.AttentionNorm.ToFloat()).ToArray(),
            Wq = w.Layers.Select(l => l.Wq.ToFloat()).ToArray(), Wk = w.Layers.Select(l => l.Wk.ToFloat()).ToArray(),
            Wv = w.Layers.Select(l => l.Wv.ToFloat()).ToArray(), Wo = w.Layers.Select(l => l.Wo.ToFloat()).ToArray(),
            FfnNorm = w.Layers.Select(l => l.FfnNorm.ToFloat()).ToArray(),
            W1 = w.Layers.Select(l => l.WGate.ToFloat()).ToArray(), W2 = w.Layers.Select(l => l.WDown.ToFloat()).ToArray(),
            W3 = w.Layers.Select(l => l.WUp.ToFloat()).ToArray(),
            Bq = w.Layers[0].Bq is null ? null : w.Layers.Select(l => l.Bq!.ToFloat()).ToArray(),
            Bk = w.Layers[0].Bk is null ? null : w.Layers.Select(l => l.Bk!.ToFloat()).ToArray(),
            Bv = w.Layers[0].Bv is null ? null : w.Layers.Select(l => l.Bv!.ToFloat()).ToArray(),
        };
    }

    private static double[] MatVec(float[] w, double[] x, int rows)
    {
        int cols = x.Length;
        var y = new double[rows];
        for (int i = 0; i < rows; i++)
        {
            double s = 0;
            for (int j = 0; j < cols; j++) s += w[(long)i * cols + j] * x[j];
            y[i] = s;
        }
        return y;
    }

    private double[] RmsNorm(double[] x, float[] w)
    {
        double ss = 0;
        foreach (var v in x) ss += v * v;
        double scale = 1.0 / Math.Sqrt(ss / x.Length + Eps);
        return x.Select((v, i) => v * scale * w[i]).ToArray();
    }

    private void Rope(double[] v, int pos)
    {
        for (int i = 0; i < v.Length; i += 2)
        {
            int j = i % HeadDim;
            double freq = 1.0 / Math.Pow(Theta, j / (double)HeadDim);
            double a = pos * freq, c = Math.Cos(a), s = Math.Sin(a);
            double v0 = v[i], v1 = v[i + 1];
            v[i] = v0 * c - v1 * s;
            v[i + 1] = v0 * s + v1 * c;
        }
    }

    /// <summary>The cached keys (after RoPE) of one layer, one [KvHeads * HeadDim] row per position (projected coordinates
    /// when a projection is set).</summary>
    public IReadOnlyList<double[]> CachedKeys(int layer) => _keys[layer];

    /// <summary>The cached values of one layer, as CachedKeys.</summary>
    public IReadOnlyList<double[]> CachedValues(int layer) => _values[layer];

    /// <summary>One layer's K or V row [KvHeads * HeadDim] as each head's projected coordinates, padded with zeros to the
    /// head's width (only the first rank entries are read).</summary>
    private double[] Project(double[] x, int layer, KvPart part)
    {
        var result = new double[x.Length];
        for (int h = 0; h < KvHeads; h++)
        {
            var mean = Projection!.Mean(part, layer, h).Select(m => (double)m).ToArray();
            Coordinates(x.AsSpan(h * HeadDim, HeadDim).ToArray(), mean, layer, h, part).CopyTo(result, h * HeadDim);
        }
        return result;
    }

    /// <summary>(x - mean) U[:, :r] for one head.</summary>
    private double[] Coordinates(double[] x, double[] mean, int layer, int head, KvPart part)
    {
        var u = Projection!.Basis(part, layer, head);
        int r = Projection.Rank(part, layer, head);
        var y = new double[r];
        for (int c = 0; c < r; c++)
            for (int i = 0; i < HeadDim; i++) y[c] += (x[i] - mean[i]) * u[i * HeadDim + c];
        return y;
    }

    /// <summary>Feeds one token at the next position and returns the logits.</summary>
    public double[] Step(int token)
    {
        int pos = _keys.Count == 0 ? 0 : _keys[0].Length;
        int kvDim = KvHeads * HeadDim;
        var x = Enumerable.Range(0, Dim).Select(i => (double)Emb[token * Dim + i]).ToArray();
        LastProbabilities = new double[Layers][][];
        LastQueries = new double[Layers][];
        for (int l = 0; l < Layers; l++)
        {
            if (_keys.Count <= l) { _keys.Add([]); _values.Add([]); }
            var xb = RmsNorm(x, AttNorm[l]);
            var q = MatVec(Wq[l], xb, Heads * HeadDim);
            var k = MatVec(Wk[l], xb, kvDim);
            var v = MatVec(Wv[l], xb, kvDim);
            if (Bq != null)
            {
                for (int i = 0; i < q.Length; i++) q[i] += Bq[l][i];
                for (int i = 0; i < k.Length; i++) { k[i] += Bk![l][i]; v[i] += Bv![l][i]; }
            }
            Rope(q, pos); Rope(k, pos);
            LastQueries[l] = (double[])q.Clone();
            if (_keyMask != null) for (int i = 0; i < k.Length; i++) k[i] *= _keyMask[l][i];
            if (Projection != null)
            {
                k = Project(k, l, KvPart.Key);
                v = Project(v, l, KvPart.Value);
            }
            _keys[l] = [.. _keys[l], k];
            _values[l] = [.. _values[l], v];
            var att = new double[Heads * HeadDim];
            int group = Heads / KvHeads;
            for (int h = 0; h < Heads; h++)
            {
                int kvh = h / group;
                var scores = new double[pos + 1];
                var qh = q.AsSpan(h * HeadDim, HeadDim).ToArray();
                if (Projection != null) qh = Coordinates(qh, new double[HeadDim], l, kvh, KvPart.Key);
                for (int t = 0; t <= pos; t++)
                {
                    double s = 0;
                    for (int d = 0; d < qh.Length; d++) s += qh[d] * _keys[l][t][kvh * HeadDim + d];
                    scores[t] = s / Math.Sqrt(HeadDim);
                }
                double max = scores.Max();
                var e = scores.Select(s => Math.Exp(s - max)).ToArray();
                double sum = e.Sum();
                if (h == 0) LastProbabilities[l] = new double[Heads][];
                LastProbabilities[l][h] = e.Select(v => v / sum).ToArray();
                int width = Projection?.Rank(KvPart.Value, l, kvh) ?? HeadDim;
                var mixed = new double[width];
                for (int t = 0; t <= pos; t++)
                    for (int d = 0; d < width; d++) mixed[d] += e[t] / sum * _values[l][t][kvh * HeadDim + d];
                if (Projection != null)
                {
                    // Un-project: U_V[:, :r] mixed + mu_V.
                    var basis = Projection.Basis(KvPart.Value, l, kvh);
                    var mu = Projection.Mean(KvPart.Value, l, kvh);
                    for (int i = 0; i < HeadDim; i++)
                    {
                        double s = mu[i];
                        for (int c = 0; c < width; c++) s += basis[i * HeadDim + c] * mixed[c];
                        att[h * HeadDim + i] = s;
                    }
                }
                else for (int d = 0; d < HeadDim; d++) att[h * HeadDim + d] = mixed[d];
            }
            var o = MatVec(Wo[l], att, Dim);
            for (int i = 0; i < Dim; i++) x[i] += o[i];
            xb = RmsNorm(x, FfnNorm[l]);
            var g = MatVec(W1[l], xb, Hidden);
            var u = MatVec(W3[l], xb, Hidden);
            for (int i = 0; i < Hidden; i++) g[i] = g[i] / (1 + Math.Exp(-g[i])) * u[i];
            var down = MatVec(W2[l], g, Dim);
            for (int i = 0; i < Dim; i++) x[i] += down[i];
        }
        return MatVec(Output, RmsNorm(x, FinalNorm), Vocab);
    }
}
