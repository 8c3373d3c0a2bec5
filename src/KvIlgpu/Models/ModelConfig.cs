namespace KvIlgpu.Models;

/// <summary>The shape and hyper-parameters of a Llama-family decoder.</summary>
public sealed record ModelConfig
{
    /// <summary>Where the model came from: "llama", "mistral", "qwen2", "llama2c", ...</summary>
    public string Architecture { get; init; } = "llama";
    /// <summary>Model width (hidden size).</summary>
    public required int Dim { get; init; }
    /// <summary>Width of the SwiGLU feed-forward layer (intermediate size).</summary>
    public required int HiddenDim { get; init; }
    /// <summary>Decoder layers.</summary>
    public required int Layers { get; init; }
    /// <summary>Query heads per layer.</summary>
    public required int Heads { get; init; }
    /// <summary>Key/value heads per layer (fewer than Heads: grouped-query attention).</summary>
    public required int KvHeads { get; init; }
    /// <summary>Tokens of the vocabulary (rows of the embedding).</summary>
    public required int VocabSize { get; init; }
    /// <summary>The context length: prompt and generated tokens together never exceed it.</summary>
    public required int MaxSeqLen { get; init; }
    /// <summary>Per-head feature size; Dim / Heads unless the checkpoint says otherwise.</summary>
    public int HeadDim { get; init; }
    /// <summary>The epsilon of every RMSNorm.</summary>
    public float RmsNormEps { get; init; } = 1e-5f;
    /// <summary>RoPE base frequency.</summary>
    public float RopeTheta { get; init; } = 10000f;
    /// <summary>How RoPE pairs the features of a head (interleaved pairs as llama2.c and GGUF, or halves as HF).</summary>
    public RopeLayout RopeLayout { get; init; } = RopeLayout.InterleavedPairs;
    /// <summary>Llama 3.1-style frequency scaling for long contexts; null for none.</summary>
    public RopeScaling? RopeScaling { get; init; }
    /// <summary>True when q/k/v projections carry biases (Qwen2).</summary>
    public bool AttentionBias { get; init; }
    /// <summary>Whether the output head shares the token embedding.</summary>
    public bool TiedEmbeddings { get; init; }
    /// <summary>The beginning-of-sequence token, when the model has one.</summary>
    public int? BosTokenId { get; init; }
    /// <summary>Tokens that end generation.</summary>
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];

    /// <summary>Width of all query heads together.</summary>
    public int QDim => Heads * HeadDim;
    /// <summary>Width of all key (or value) heads together.</summary>
    public int KvDim => KvHeads * HeadDim;
    /// <summary>Query heads per key/value head.</summary>
    public int GroupSize => Heads / KvHeads;

    /// <summary>The longest context a model may declare (its RoPE table is built for every position).</summary>
    public const int MaxContext = 1 << 22;
    /// <summary>The largest vocabulary a model may declare.</summary>
    public const int MaxVocabulary = 1 << 24;

    /// <summary>Fills defaults and checks that the numbers fit together.</summary>
    public ModelConfig Validated(string source)
    {
        var c = HeadDim == 0 && Heads > 0 ? this with { HeadDim = Dim / Heads } : this;
        void Require(bool ok, string what)
        {
            if (!ok) throw new InvalidModelException(source,
                $"inconsistent model shape: {what} (dim={c.Dim}, hidden={c.HiddenDim}, layers={c.Layers}, heads={c.Heads}, " +
                    $"kv_heads={c.KvHeads}, head_dim={c.HeadDim}, vocab={c.VocabSize}, context={c.MaxSeqLen})");
        }
        Require(c.Dim > 0 && c.HiddenDim > 0 && c.Layers > 0 && c.VocabSize > 0 && c.MaxSeqLen > 0, "sizes must be positive");
        Require(c.Heads > 0 && c.KvHeads > 0, "head counts must be positive");
        Require(c.Heads % c.KvHeads == 0, "heads must be a multiple of kv_heads");
        Require(c.HeadDim > 0 && c.HeadDim % 2 == 0, "head_dim must be even");
        Require(c.MaxSeqLen <= MaxContext, $"the context must be at most {MaxContext} positions");
        Require(c.VocabSize <= MaxVocabulary, $"the vocabulary must be at most {MaxVocabulary} tokens");
        if (!(c.RmsNormEps > 0) || !float.IsFinite(c.RmsNormEps))
            throw new InvalidModelException(source, $"rms_norm_eps must be positive and finite (got {c.RmsNormEps})");
        if (!(c.RopeTheta > 0) || !float.IsFinite(c.RopeTheta))
            throw new InvalidModelException(source, $"rope_theta must be positive and finite (got {c.RopeTheta})");
        if (c.RopeScaling is { } rs && !(rs.Factor > 0 && float.IsFinite(rs.Factor) && rs.LowFreqFactor > 0 && rs.HighFreqFactor > 0
            && rs.OriginalMaxPositionEmbeddings > 0))
            throw new InvalidModelException(source, "rope_scaling: factor, low_freq_factor, high_freq_factor and " +
                "original_max_position_embeddings must be positive");
        foreach (int id in c.EosTokenIds.Append(c.BosTokenId ?? 0))
            if ((uint)id >= (uint)c.VocabSize)
                throw new InvalidModelException(source, $"token id {id} (bos or eos) is outside the vocabulary of {c.VocabSize}");
        return c;
    }
}
