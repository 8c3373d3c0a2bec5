namespace KvIlgpu.Models;

/// <summary>The shape and hyper-parameters of a Llama-family decoder.</summary>
public sealed record ModelConfig
{
    /// <summary>Where the model came from: "llama", "mistral", "qwen2", "llama2c", ...</summary>
    public string Architecture { get; init; } = "llama";
    public required int Dim { get; init; }
    public required int HiddenDim { get; init; }
    public required int Layers { get; init; }
    public required int Heads { get; init; }
    public required int KvHeads { get; init; }
    public required int VocabSize { get; init; }
    /// <summary>The context length: prompt and generated tokens together never exceed it.</summary>
    public required int MaxSeqLen { get; init; }
    /// <summary>Per-head feature size; Dim / Heads unless the checkpoint says otherwise.</summary>
    public int HeadDim { get; init; }
    public float RmsNormEps { get; init; } = 1e-5f;
    public float RopeTheta { get; init; } = 10000f;
    public RopeLayout RopeLayout { get; init; } = RopeLayout.InterleavedPairs;
    public RopeScaling? RopeScaling { get; init; }
    /// <summary>True when q/k/v projections carry biases (Qwen2).</summary>
    public bool AttentionBias { get; init; }
    public bool TiedEmbeddings { get; init; }
    public int? BosTokenId { get; init; }
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];

    public int QDim => Heads * HeadDim;
    public int KvDim => KvHeads * HeadDim;
    public int GroupSize => Heads / KvHeads;

    /// <summary>Fills defaults and checks that the numbers fit together.</summary>
    public ModelConfig Validated(string source)
    {
        var c = HeadDim == 0 && Heads > 0 ? this with { HeadDim = Dim / Heads } : this;
        void Require(bool ok, string what)
        {
            if (!ok) throw new InvalidModelException(source, $"inconsistent model shape: {what} (dim={c.Dim}, hidden={c.HiddenDim}, layers={c.Layers}, heads={c.Heads}, kv_heads={c.KvHeads}, head_dim={c.HeadDim}, vocab={c.VocabSize}, context={c.MaxSeqLen})");
        }
        Require(c.Dim > 0 && c.HiddenDim > 0 && c.Layers > 0 && c.VocabSize > 0 && c.MaxSeqLen > 0, "sizes must be positive");
        Require(c.Heads > 0 && c.KvHeads > 0, "head counts must be positive");
        Require(c.Heads % c.KvHeads == 0, "heads must be a multiple of kv_heads");
        Require(c.HeadDim > 0 && c.HeadDim % 2 == 0, "head_dim must be even");
        return c;
    }
}
