using KvIlgpu.Models;

namespace KvIlgpu.Projection;

/// <summary>MatryoshkaKV's feature-axis compression (SPEC section 5; Lin et al., arXiv 2410.14731): per (layer, KV head)
/// an orthogonal basis U_K, U_V (head_dim x head_dim) and means mu_K, mu_V, with nested ranks r_K, r_V. The cache keeps
/// the leading r columns' coordinates: keys (after RoPE) as (k - mu_K) U_K[:, :r_K], values as (v - mu_V) U_V[:, :r_V];
/// queries are projected with U_K but not centred (the dropped q.mu_K is the same for every key, so softmax ignores
/// it), the score scale stays 1/sqrt(head_dim), and a head's output is un-projected with U_V[:, :r_V]^T and mu_V added
/// back. Any prefix of a basis's columns is a valid smaller projection, so one basis serves every rank; at full rank
/// the model's output is unchanged. Matrices belong to the KV head and are shared by its query heads.</summary>
public sealed class KvProjection
{
    /// <summary>How the file's bases were made ("pca", "trained", "identity", ...), from its metadata.</summary>
    public string Method { get; }
    /// <summary>Where the projection was read from (errors name it); null when it was made in memory.</summary>
    public string? Source { get; init; }
    /// <summary>Decoder layers.</summary>
    public int Layers { get; }
    /// <summary>KV heads per layer.</summary>
    public int KvHeads { get; }
    /// <summary>Features per head (d).</summary>
    public int HeadDim { get; }

    // Bases [layer, head, row i, column j] with column j the j-th basis vector; means [layer, head, i]; ranks [layer, head].
    private readonly float[] _keyBases, _valueBases, _keyMeans, _valueMeans;
    private readonly int[] _keyRanks, _valueRanks;
    // Whether the bases and means passed Checked (WithRanks shares them, so its projections skip the O(d^3) check).
    private bool _basesChecked;

    /// <summary>Largest deviation from orthogonality a basis may have (max |U^T U - I|).</summary>
    public const float OrthogonalityTolerance = 1e-4f;

    /// <summary>A projection from its parts (bases [layers * kvHeads * headDim * headDim] as [layer, head, row, column],
    /// means [layers * kvHeads * headDim], ranks [layers * kvHeads] each in 1..headDim); checked like a file's.</summary>
    public KvProjection(string method, int layers, int kvHeads, int headDim, float[] keyBases, float[] keyMeans, float[] valueBases,
        float[] valueMeans, int[] keyRanks, int[] valueRanks)
    {
        Method = method; Layers = layers; KvHeads = kvHeads; HeadDim = headDim;
        _keyBases = keyBases; _keyMeans = keyMeans; _valueBases = valueBases; _valueMeans = valueMeans;
        _keyRanks = keyRanks; _valueRanks = valueRanks;
        int heads = layers * kvHeads;
        void Size(Array a, long n, string what)
        {
            if (a.Length != n) throw new ArgumentException($"{what} has {a.Length} values; {layers} layers x {kvHeads} KV heads need {n}");
        }
        Size(keyBases, (long)heads * headDim * headDim, "the key bases");
        Size(valueBases, (long)heads * headDim * headDim, "the value bases");
        Size(keyMeans, (long)heads * headDim, "the key means");
        Size(valueMeans, (long)heads * headDim, "the value means");
        Size(keyRanks, heads, "the key ranks");
        Size(valueRanks, heads, "the value ranks");
    }

    /// <summary>The identity basis with zero means at full rank: the model unchanged (a starting point, and a test
    /// reference).</summary>
    public static KvProjection Identity(int layers, int kvHeads, int headDim)
    {
        int heads = layers * kvHeads;
        var bases = new float[heads * headDim * headDim];
        for (int h = 0; h < heads; h++) for (int i = 0; i < headDim; i++) bases[(h * headDim + i) * headDim + i] = 1;
        var ranks = Enumerable.Repeat(headDim, heads).ToArray();
        return new KvProjection("identity", layers, kvHeads, headDim, bases, new float[heads * headDim], (float[])bases.Clone(),
            new float[heads * headDim], ranks, (int[])ranks.Clone());
    }

    /// <summary>The basis of one head, [row, column] (a copy).</summary>
    public float[] Basis(KvPart part, int layer, int head) =>
        Bases(part).AsSpan(HeadIndex(layer, head) * HeadDim * HeadDim, HeadDim * HeadDim).ToArray();

    /// <summary>The mean of one head (a copy).</summary>
    public float[] Mean(KvPart part, int layer, int head) => Means(part).AsSpan(HeadIndex(layer, head) * HeadDim, HeadDim).ToArray();

    /// <summary>The kept rank of one head.</summary>
    public int Rank(KvPart part, int layer, int head) => Ranks(part)[HeadIndex(layer, head)];

    /// <summary>Every head's rank of one part, [layer, head].</summary>
    public IReadOnlyList<int> AllRanks(KvPart part) => Ranks(part);

    /// <summary>The mean kept fraction of feature dims over every head's K and V.</summary>
    public double KeptFraction => (_keyRanks.Sum() + _valueRanks.Sum()) / (2.0 * Layers * KvHeads * HeadDim);

    /// <summary>The same bases and means with other ranks ([layer, head] each, in 1..HeadDim).</summary>
    public KvProjection WithRanks(IReadOnlyList<int> keyRanks, IReadOnlyList<int> valueRanks, string? method = null)
    {
        var p = new KvProjection(method ?? Method, Layers, KvHeads, HeadDim, _keyBases, _keyMeans, _valueBases, _valueMeans,
            [.. keyRanks], [.. valueRanks])
        { Source = Source, _basesChecked = _basesChecked };
        p.CheckRanks(Source ?? "ranks");
        return p;
    }

    /// <summary>Every head at the same rank: round(fraction * HeadDim), at least 1 (fraction in (0, 1]).</summary>
    public KvProjection WithUniformRanks(double fraction)
    {
        if (!(fraction is > 0 and <= 1))
            throw new InvalidOptionException("KvRanks", $"a kept fraction of feature dims must be in (0, 1], got {fraction}");
        int rank = UniformRank(fraction, HeadDim);
        var ranks = Enumerable.Repeat(rank, Layers * KvHeads).ToArray();
        return WithRanks(ranks, ranks);
    }

    /// <summary>The rank that keeps fraction of d dims: round(fraction * d), at least 1.</summary>
    public static int UniformRank(double fraction, int headDim) => Math.Clamp((int)Math.Round(fraction * headDim), 1, headDim);

    /// <summary>Checks the projection against a model's shape and itself: layers, KV heads and head_dim equal the
    /// model's, every basis orthogonal (to <see cref="OrthogonalityTolerance"/>), values finite, ranks in 1..head_dim.
    /// Throws <see cref="InvalidModelException"/> naming source and the tensor.</summary>
    public KvProjection CheckedFor(ModelConfig model, string source)
    {
        if (Layers != model.Layers || KvHeads != model.KvHeads || HeadDim != model.HeadDim)
            throw new InvalidModelException(source, $"the projection is for {Layers} layers x {KvHeads} KV heads x head_dim " +
                $"{HeadDim}; the model has {model.Layers} x {model.KvHeads} x {model.HeadDim}");
        return Checked(source);
    }

    /// <summary>Checks orthogonality, finiteness and ranks (see <see cref="CheckedFor"/>).</summary>
    public KvProjection Checked(string source)
    {
        if (_basesChecked)
        {
            CheckRanks(source);
            return this;
        }
        int d = HeadDim;
        for (int l = 0; l < Layers; l++)
            for (int h = 0; h < KvHeads; h++)
                foreach (var part in new[] { KvPart.Key, KvPart.Value })
                {
                    var u = Bases(part).AsSpan(HeadIndex(l, h) * d * d, d * d);
                    var mu = Means(part).AsSpan(HeadIndex(l, h) * d, d);
                    string name = TensorName(part, l);
                    foreach (var x in u)
                        if (!float.IsFinite(x)) throw new InvalidModelException(source, $"tensor {name}: head {h} holds {x}");
                    foreach (var x in mu)
                        if (!float.IsFinite(x)) throw new InvalidModelException(source, $"tensor {MeanName(part, l)}: head {h} holds {x}");
                    double worst = OrthogonalityError(u, d);
                    if (!(worst <= OrthogonalityTolerance))
                        throw new InvalidModelException(source, $"tensor {name}: head {h}'s basis is not orthogonal " +
                            $"(max |U^T U - I| = {worst:G3}, tolerance {OrthogonalityTolerance})");
                }
        CheckRanks(source);
        _basesChecked = true;
        return this;
    }

    private void CheckRanks(string source)
    {
        foreach (var part in new[] { KvPart.Key, KvPart.Value })
        {
            var ranks = Ranks(part);
            for (int i = 0; i < ranks.Length; i++)
                if (ranks[i] < 1 || ranks[i] > HeadDim)
                    throw new InvalidModelException(source, $"{RankKey(part)}: layer {i / KvHeads} head {i % KvHeads} has rank " +
                        $"{ranks[i]}, " +
                        $"outside 1..{HeadDim}");
        }
    }

    /// <summary>max over (i, j) of |(U^T U)[i, j] - delta(i, j)| for a row-major d x d U.</summary>
    public static double OrthogonalityError(ReadOnlySpan<float> u, int d)
    {
        double worst = 0;
        for (int i = 0; i < d; i++)
            for (int j = i; j < d; j++)
            {
                double dot = 0;
                for (int r = 0; r < d; r++) dot += (double)u[r * d + i] * u[r * d + j];
                worst = Math.Max(worst, Math.Abs(dot - (i == j ? 1 : 0)));
            }
        return worst;
    }

    internal int HeadIndex(int layer, int head) => layer * KvHeads + head;
    internal float[] Bases(KvPart part) => part == KvPart.Key ? _keyBases : _valueBases;
    internal float[] Means(KvPart part) => part == KvPart.Key ? _keyMeans : _valueMeans;
    internal int[] Ranks(KvPart part) => part == KvPart.Key ? _keyRanks : _valueRanks;

    /// <summary>The file's tensor of one layer's bases: layers.L.key_basis / layers.L.value_basis, [kv_heads, d, d].</summary>
    public static string TensorName(KvPart part, int layer) => $"layers.{layer}.{(part == KvPart.Key ? "key" : "value")}_basis";
    /// <summary>The file's tensor of one layer's means: layers.L.key_mean / layers.L.value_mean, [kv_heads, d].</summary>
    public static string MeanName(KvPart part, int layer) => $"layers.{layer}.{(part == KvPart.Key ? "key" : "value")}_mean";
    /// <summary>The metadata key of a part's ranks: key_ranks / value_ranks.</summary>
    public static string RankKey(KvPart part) => part == KvPart.Key ? "key_ranks" : "value_ranks";
}
