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
            ".bin" => new Llama2cTextTokenizer(path, vocabSize ?? throw new ArgumentException($"{path}: a llama2.c tokenizer.bin needs the model's vocabulary size")),
            _ => throw new InvalidDataException($"{path}: unknown tokenizer format (expected tokenizer.model, tokenizer.json or tokenizer.bin)"),
        };
    }

    /// <summary>The tokenizer that belongs to a model path, or null when there is none: in a model folder,
    /// tokenizer.model then tokenizer.json; beside a .bin checkpoint, tokenizer.bin.</summary>
    public static ITextTokenizer? ForModel(string modelPath, int vocabSize, int? bosId, int? eosId)
    {
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
