namespace KvIlgpu.Tokenization;

/// <summary>Finds and opens a model's tokenizer: tokenizer.model (SentencePiece), tokenizer.json (byte-level BPE) or
/// llama2.c's tokenizer.bin.</summary>
public static class TokenizerLoader
{
    /// <summary>Opens a tokenizer file by its kind (extension, else content).</summary>
    public static ITextTokenizer Open(string path, int? vocabSize = null, int? bosId = null, int? eosId = null)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"tokenizer not found: {path}", path);
        return Path.GetExtension(path).ToLowerInvariant() switch
        {
            ".model" => new SentencePieceTextTokenizer(path),
            ".json" => new ByteLevelBpeTextTokenizer(path, bosId, eosId),
            ".bin" => new Llama2cTextTokenizer(path, vocabSize
                ?? throw new ArgumentException($"{path}: a llama2.c tokenizer.bin needs the model's vocabulary size")),
            _ => throw new InvalidDataException($"{path}: unknown tokenizer format (expected tokenizer.model, tokenizer.json or " +
                $"tokenizer.bin)"),
        };
    }

    /// <summary>The tokenizer embedded in a GGUF file: "llama" (SentencePiece pieces with scores) or "gpt2" (byte-level
    /// BPE with merges); null when the file has none.</summary>
    internal static ITextTokenizer? FromGguf(Models.Loading.GgufFile f)
    {
        string? model = f.Get<string>("tokenizer.ggml.model");
        if (model == null) return null;
        var tokens = (f.Metadata.GetValueOrDefault("tokenizer.ggml.tokens") as object[])?.Cast<string>().ToList()
            ?? throw new InvalidDataException($"{f.Path}: tokenizer.ggml.tokens is missing");
        int? Id(string key) => f.Metadata.ContainsKey(key) ? f.Get<int>(key) : null;
        int? bos = Id("tokenizer.ggml.bos_token_id"), eos = Id("tokenizer.ggml.eos_token_id");
        switch (model)
        {
            case "llama":
                var scores = (f.Metadata.GetValueOrDefault("tokenizer.ggml.scores") as object[])?.Select(Convert.ToSingle).ToList()
                    ?? throw new InvalidDataException($"{f.Path}: tokenizer.ggml.scores is missing");
                return new Llama2cTextTokenizer(tokens, scores, bos, eos);
            case "gpt2":
                var merges = (f.Metadata.GetValueOrDefault("tokenizer.ggml.merges") as object[])?.Cast<string>().ToList()
                    ?? throw new InvalidDataException($"{f.Path}: tokenizer.ggml.merges is missing");
                var types = (f.Metadata.GetValueOrDefault("tokenizer.ggml.token_type") as object[])?.Select(Convert.ToInt32).ToList();
                string pattern = f.Get<string>("tokenizer.ggml.pre") switch
                {
                    "llama-bpe" or "llama3" or "smaug-bpe" => ByteLevelBpeTextTokenizer.Llama3Pattern,
                    _ => ByteLevelBpeTextTokenizer.Gpt2Pattern,
                };
                return new ByteLevelBpeTextTokenizer(tokens, merges, types, pattern, bos, eos);
            default:
                throw new InvalidDataException($"{f.Path}: GGUF tokenizer model '{model}' is not supported (llama and gpt2 are)");
        }
    }

    /// <summary>The tokenizer that belongs to a model path, or null when there is none: in a model folder,
    /// tokenizer.model then tokenizer.json; beside a .bin checkpoint, tokenizer.bin.</summary>
    public static ITextTokenizer? ForModel(string modelPath, int vocabSize, int? bosId, int? eosId)
    {
        if (!Directory.Exists(modelPath) && modelPath.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase))
            return FromGguf(Models.Loading.GgufFile.Open(modelPath));
        var dir = Directory.Exists(modelPath) ? modelPath : Path.GetDirectoryName(Path.GetFullPath(modelPath))!;
        var candidates = Directory.Exists(modelPath)
            ? new[] { "tokenizer.model", "tokenizer.json" }
            : modelPath.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase) ? [] : new[] { "tokenizer.bin" };
        foreach (var c in candidates)
        {
            var p = Path.Combine(dir, c);
            if (!File.Exists(p)) continue;
            var tok = Open(p, vocabSize, bosId, eosId);
            // A tokenizer.bin beside a checkpoint of another vocabulary does not belong to it.
            if (c == "tokenizer.bin" && tok.VocabularySize != vocabSize) return null;
            return tok;
        }
        return null;
    }
}
