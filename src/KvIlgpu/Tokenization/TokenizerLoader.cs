using KvIlgpu.Models;

namespace KvIlgpu.Tokenization;

/// <summary>Finds and opens a model's tokenizer: tokenizer.model (SentencePiece), tokenizer.json (byte-level BPE) or
/// llama2.c's tokenizer.bin.</summary>
public static class TokenizerLoader
{
    /// <summary>Opens a tokenizer file by its kind (extension, else content). A file that cannot be read, or whose ids do
    /// not fit the model's vocabulary (when vocabSize is given), is an <see cref="InvalidModelException"/> naming it.</summary>
    public static ITextTokenizer Open(string path, int? vocabSize = null, int? bosId = null, int? eosId = null)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"tokenizer not found: {path}", path);
        return Checked(path, vocabSize, () => OpenFile(path, vocabSize, bosId, eosId));
    }

    /// <summary>The loaders' one error type for everything a damaged tokenizer provokes, and its ids checked against the
    /// model's vocabulary: a tokenizer with more tokens than the model has rows would feed it ids outside them.</summary>
    private static ITextTokenizer Checked(string path, int? vocabSize, Func<ITextTokenizer> open)
    {
        ITextTokenizer tokenizer;
        try { tokenizer = open(); }
        catch (Exception e) when (e is not (InvalidModelException or FileNotFoundException or OperationCanceledException))
        {
            throw new InvalidModelException(path, $"the tokenizer cannot be read: {e.Message}", e);
        }
        if (vocabSize is int vocab)
        {
            if (tokenizer.VocabularySize > vocab)
                throw new InvalidModelException(path, $"the tokenizer has {tokenizer.VocabularySize} tokens, but the model's vocabulary " +
                    $"has {vocab}: its ids would fall outside the model");
            foreach (var (name, id) in new[] { ("BOS", tokenizer.BosId), ("EOS", tokenizer.EosId) })
                if (id is int i && (uint)i >= (uint)vocab)
                    throw new InvalidModelException(path, $"the tokenizer's {name} id {i} is outside the model's vocabulary of {vocab}");
        }
        return tokenizer;
    }

    private static ITextTokenizer OpenFile(string path, int? vocabSize, int? bosId, int? eosId) =>
        Path.GetExtension(path).ToLowerInvariant() switch
        {
            ".model" => new SentencePieceTextTokenizer(path),
            ".json" => new ByteLevelBpeTextTokenizer(path, bosId, eosId),
            ".gguf" => FromGguf(Models.Loading.GgufFile.Open(path))
                ?? throw new InvalidModelException(path, "the GGUF file has no tokenizer (no tokenizer.ggml.model)"),
            ".bin" => new Llama2cTextTokenizer(path, vocabSize
                ?? throw new ArgumentException($"{path}: a llama2.c tokenizer.bin needs the model's vocabulary size")),
            _ => throw new InvalidDataException($"{path}: unknown tokenizer format (expected tokenizer.model, tokenizer.json, " +
                $"tokenizer.bin or a .gguf file, vocabulary-only or whole)"),
        };

    /// <summary>The tokenizer embedded in a GGUF file: "llama" (SentencePiece pieces with scores) or "gpt2" (byte-level
    /// BPE with merges); null when the file has none (no tokenizer.ggml.model, or llama.cpp's "no_vocab" / "none").</summary>
    internal static ITextTokenizer? FromGguf(Models.Loading.GgufFile f)
    {
        if (!f.Metadata.ContainsKey("tokenizer.ggml.model") || f.Metadata["tokenizer.ggml.model"] is "no_vocab" or "none") return null;
        return Checked(f.Path, null, () => EmbeddedTokenizer(f));
    }

    private static ITextTokenizer EmbeddedTokenizer(Models.Loading.GgufFile f)
    {
        string? model = f.Get<string>("tokenizer.ggml.model");
        if (model == null) throw new InvalidModelException(f.Path, "tokenizer.ggml.model is not a string");
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
                // The pre-tokenizer, as llama.cpp maps tokenizer.ggml.pre to its regexes. One this loader does not implement is
                // refused by name: splitting text another way would tokenize it wrongly without a word.
                string? pre = f.Get<string>("tokenizer.ggml.pre");
                string[] patterns = pre switch
                {
                    "llama-bpe" or "llama3" or "smaug-bpe" => [ByteLevelBpeTextTokenizer.Llama3Pattern],
                    "qwen2" or "deepseek-r1-qwen" => [ByteLevelBpeTextTokenizer.Qwen2Pattern],
                    "smollm" or "starcoder" or "refact" or "command-r" or "codeshell" or "exaone" or "minerva-7b"
                        => ByteLevelBpeTextTokenizer.SmolLmPatterns,
                    "deepseek-coder" => ByteLevelBpeTextTokenizer.DeepSeekCoderPatterns,
                    "deepseek-llm" => ByteLevelBpeTextTokenizer.DeepSeekLlmPatterns,
                    null or "default" or "gpt-2" => [ByteLevelBpeTextTokenizer.Gpt2Pattern],
                    _ => throw new InvalidModelException(f.Path, $"tokenizer.ggml.pre '{pre}' is not supported (supported: llama-bpe, " +
                        "llama3 and smaug-bpe, whose splitting is Llama 3's; qwen2 and deepseek-r1-qwen, Qwen2's; smollm, starcoder, " +
                        "refact, command-r, codeshell, exaone and minerva-7b, SmolLM's; deepseek-coder; deepseek-llm; gpt-2 and default, " +
                        "GPT-2's)"),
                };
                return new ByteLevelBpeTextTokenizer(tokens, merges, types, patterns, bos, eos);
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
