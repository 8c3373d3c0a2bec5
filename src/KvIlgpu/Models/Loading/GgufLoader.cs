namespace KvIlgpu.Models.Loading;

/// <summary>Loads llama-architecture GGUF files (llama.cpp's convert and quantize output): f32, f16,
/// bf16 and ggml's q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q5_K and q6_K tensors, mixed in one file as llama-quantize writes them.
/// llama.cpp stores Q and K in the interleaved-pair RoPE order, so no un-permuting is needed.</summary>
internal static class GgufLoader
{
    public static LlamaWeights Load(string path, IProgress<LoadProgress>? progress = null) => Load(GgufFile.Open(path), progress);

    public static ModelConfig ReadConfig(GgufFile f)
    {
        string arch = f.Get<string>("general.architecture") ?? "";
        if (arch != "llama")
            throw new InvalidModelException(f.Path, $"GGUF architecture '{arch}' is not supported (supported: llama)");
        int Int(string key) => f.Metadata.ContainsKey($"llama.{key}") ? f.Get<int>($"llama.{key}")
            : throw new InvalidModelException(f.Path, $"missing metadata llama.{key}");
        int heads = Int("attention.head_count");
        int dim = Int("embedding_length");
        int vocab = f.Metadata.ContainsKey("llama.vocab_size") ? f.Get<int>("llama.vocab_size")
            : f.Tensors.TryGetValue("token_embd.weight", out var emb) ? (int)emb.Dims[1]
            : throw new InvalidModelException(f.Path, "cannot tell the vocabulary size");
        RopeScaling? scaling = null;
        string? scalingType = f.Get<string>("llama.rope.scaling.type");
        if (scalingType == "linear") scaling = new RopeScaling("linear", f.Get<float>("llama.rope.scaling.factor"));
        else if (scalingType is not (null or "none"))
            throw new InvalidModelException(f.Path, $"rope scaling '{scalingType}' is not supported");
        var eos = f.Metadata.ContainsKey("tokenizer.ggml.eos_token_id") ? new[] { f.Get<int>("tokenizer.ggml.eos_token_id") } : [];
        return new ModelConfig
        {
            Architecture = "llama",
            Dim = dim,
            HiddenDim = Int("feed_forward_length"),
            Layers = Int("block_count"),
            Heads = heads,
            KvHeads = f.Metadata.ContainsKey("llama.attention.head_count_kv") ? f.Get<int>("llama.attention.head_count_kv") : heads,
            VocabSize = vocab,
            MaxSeqLen = Int("context_length"),
            HeadDim = f.Metadata.ContainsKey("llama.rope.dimension_count") ? f.Get<int>("llama.rope.dimension_count") : dim / heads,
            RmsNormEps = f.Metadata.ContainsKey("llama.attention.layer_norm_rms_epsilon")
                ? f.Get<float>("llama.attention.layer_norm_rms_epsilon")
                : 1e-5f,
            RopeTheta = f.Metadata.ContainsKey("llama.rope.freq_base") ? f.Get<float>("llama.rope.freq_base") : 10000f,
            RopeLayout = RopeLayout.InterleavedPairs,
            RopeScaling = scaling,
            TiedEmbeddings = !f.Tensors.ContainsKey("output.weight"),
            BosTokenId = f.Metadata.ContainsKey("tokenizer.ggml.bos_token_id") ? f.Get<int>("tokenizer.ggml.bos_token_id") : null,
            EosTokenIds = eos,
        }.Validated(f.Path);
    }

    public static LlamaWeights Load(GgufFile f, IProgress<LoadProgress>? progress)
    {
        if (f.Tensors.Count == 0)
            throw new InvalidModelException(f.Path, "the GGUF file holds no tensors: a vocabulary-only file (as llama.cpp's " +
                "--vocab-only writes it) is a tokenizer; give it as --tokenizer");
        var config = ReadConfig(f);
        // Every layer has nine tensors: a damaged llama.block_count is refused here, before anything is sized by it.
        if ((long)config.Layers * 9 > f.Tensors.Count)
            throw new InvalidModelException(f.Path, $"metadata llama.block_count is {config.Layers}, but the file holds " +
                $"{f.Tensors.Count} tensors, enough for at most {f.Tensors.Count / 9} layers");
        // Every tensor must be one the llama architecture names: a damaged name is an error, not, say, an output head
        // silently replaced by the tied embedding. (rope_freqs.weight, Llama 3.1's frequency factors, is known and unused.)
        var known = new HashSet<string> { "token_embd.weight", "output_norm.weight", "output.weight", "rope_freqs.weight" };
        for (int l = 0; l < config.Layers; l++)
            foreach (var part in (string[])["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_down",
                "ffn_up"])
                known.Add($"blk.{l}.{part}.weight");
        foreach (var name in f.Tensors.Keys)
            if (!known.Contains(name))
                throw new InvalidModelException(f.Path, $"tensor {name} is not a tensor of a {config.Layers}-layer llama model");
        long total = f.Tensors.Values.Sum(GgufFile.TensorByteSize), done = 0;
        WeightTensor Read(string name)
        {
            var t = f.Read(name, progress, done, total);
            done += GgufFile.TensorByteSize(f.Tensors[name]);
            return t;
        }
        static WeightTensor F32(WeightTensor t) => t.ConvertTo(WeightType.F32);
        var emb = Read("token_embd.weight");
        var layers = new List<LayerWeights>();
        for (int l = 0; l < config.Layers; l++)
        {
            string p = $"blk.{l}.";
            layers.Add(new LayerWeights(
                F32(Read(p + "attn_norm.weight")),
                Read(p + "attn_q.weight"), Read(p + "attn_k.weight"), Read(p + "attn_v.weight"), Read(p + "attn_output.weight"),
                null, null, null,
                F32(Read(p + "ffn_norm.weight")),
                Read(p + "ffn_gate.weight"), Read(p + "ffn_down.weight"), Read(p + "ffn_up.weight")));
        }
        var norm = F32(Read("output_norm.weight"));
        var output = config.TiedEmbeddings ? emb : Read("output.weight");
        return new LlamaWeights(config, emb, layers, norm, output, f.Path);
    }
}
