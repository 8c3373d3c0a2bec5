namespace KvIlgpu.Models.Loading;

/// <summary>Loads karpathy/llama2.c checkpoints: the legacy format (7-int header, f32 tensors, negative
/// vocab size meaning a separate classifier) and export version 1 (magic "ak42", f32).</summary>
internal static class Llama2cLoader
{
    private const uint Magic = 0x616b3432; // "ak42"

    public static LlamaWeights Load(string path, IProgress<LoadProgress>? progress = null)
    {
        using var r = new TensorFileReader(path, progress);
        uint first = r.ReadUInt32("header");
        int version = 0;
        if (first == Magic)
        {
            version = r.ReadInt32("header version");
            if (version != 1)
                throw new InvalidModelException(path,
                    $"llama2.c export version {version} is not supported (only the legacy format and version 1, f32)");
        }
        else r.Position = 0;

        int dim = r.ReadInt32("header dim"), hidden = r.ReadInt32("header hidden_dim"), layers = r.ReadInt32("header n_layers"),
            heads = r.ReadInt32("header n_heads"), kvHeads = r.ReadInt32("header n_kv_heads"), vocab = r.ReadInt32("header vocab_size"),
            seqLen = r.ReadInt32("header seq_len");
        bool shared;
        if (version == 1)
        {
            shared = r.ReadBytes(1, "header shared_classifier")[0] != 0;
            r.Position = 256;
        }
        else
        {
            shared = vocab > 0;
            vocab = Math.Abs(vocab);
        }
        if (dim <= 0 || dim > 1 << 16 || layers <= 0 || layers > 1024 || heads <= 0 || heads > dim || kvHeads <= 0 || vocab <= 0
            || seqLen <= 0 || hidden <= 0)
            throw new InvalidModelException(path,
                $"not a llama2.c checkpoint: implausible header (dim={dim}, hidden={hidden}, layers={layers}, heads={heads}, " +
                    $"kv_heads={kvHeads}, vocab={vocab}, seq_len={seqLen})");

        var config = new ModelConfig
        {
            Architecture = "llama2c", Dim = dim, HiddenDim = hidden, Layers = layers, Heads = heads, KvHeads = kvHeads,
            VocabSize = vocab, MaxSeqLen = seqLen, RopeLayout = RopeLayout.InterleavedPairs, TiedEmbeddings = shared,
            BosTokenId = 1, EosTokenIds = [2],
        }.Validated(path);
        int hd = config.HeadDim, qDim = config.QDim, kvDim = config.KvDim;

        long floats = (long)vocab * dim + layers * ((long)dim * 2 + (long)qDim * dim * 2 + (long)kvDim * dim * 2 + 3L * dim * hidden) + dim;
        if (version == 0) floats += (long)seqLen * hd; // the two legacy RoPE tables
        if (!shared) floats += (long)vocab * dim;
        r.ProgressTotal = floats * 4;
        long expectedEnd = r.Position + floats * 4;
        if (r.Length < expectedEnd)
            throw new InvalidModelException(path,
                $"truncated: the header describes {expectedEnd} bytes of checkpoint, the file has {r.Length}");

        WeightTensor Read(string name, int rows, int cols) => WeightTensor.FromF32(name, rows, cols, r.ReadArray<float>((long)rows * cols,
            name));
        WeightTensor[] ReadStack(string name, int rows, int cols) =>
            Enumerable.Range(0, layers).Select(l => Read($"{name}[{l}]", rows, cols)).ToArray();

        WeightTensor emb;
        WeightTensor[] rmsAtt, rmsFfn, wq, wk, wv, wo, w1, w2, w3;
        WeightTensor rmsFinal;
        if (version == 0)
        {
            emb = Read("token_embedding", vocab, dim);
            rmsAtt = ReadStack("rms_att", 1, dim);
            wq = ReadStack("wq", qDim, dim); wk = ReadStack("wk", kvDim, dim); wv = ReadStack("wv", kvDim, dim);
            wo = ReadStack("wo", dim, qDim);
            rmsFfn = ReadStack("rms_ffn", 1, dim);
            w1 = ReadStack("w1", hidden, dim); w2 = ReadStack("w2", dim, hidden); w3 = ReadStack("w3", hidden, dim);
            rmsFinal = Read("rms_final", 1, dim);
            r.Skip((long)seqLen * hd * 4, "legacy RoPE tables");
        }
        else
        {
            rmsAtt = ReadStack("rms_att", 1, dim); rmsFfn = ReadStack("rms_ffn", 1, dim); rmsFinal = Read("rms_final", 1, dim);
            emb = Read("token_embedding", vocab, dim);
            wq = ReadStack("wq", qDim, dim); wk = ReadStack("wk", kvDim, dim); wv = ReadStack("wv", kvDim, dim);
            wo = ReadStack("wo", dim, qDim);
            w1 = ReadStack("w1", hidden, dim); w2 = ReadStack("w2", dim, hidden); w3 = ReadStack("w3", hidden, dim);
        }
        var output = shared ? emb : Read("wcls", vocab, dim);
        if (r.Position != r.Length)
            throw new InvalidModelException(path,
                $"{r.Length - r.Position} unexpected bytes after the last tensor: the header does not describe this file (wrong shape " +
                    $"or classifier flag?)");

        var layerWeights = Enumerable.Range(0, layers).Select(l => new LayerWeights(
            rmsAtt[l], wq[l], wk[l], wv[l], wo[l], null, null, null, rmsFfn[l], w1[l], w2[l], w3[l])).ToList();
        return new LlamaWeights(config, emb, layerWeights, rmsFinal, output, path);
    }
}
