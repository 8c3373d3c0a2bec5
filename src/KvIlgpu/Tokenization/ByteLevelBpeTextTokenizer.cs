using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace KvIlgpu.Tokenization;

/// <summary>A Hugging Face tokenizer.json with a byte-level BPE model (Llama 3, Qwen2, SmolLM2, GPT-2 style):
/// its vocab, merges, pre-tokenizer regex and special tokens adapted into Microsoft.ML.Tokenizers' BpeTokenizer.</summary>
internal sealed class ByteLevelBpeTextTokenizer : ITextTokenizer
{
    /// <summary>GPT-2's pre-tokenizer pattern, used by ByteLevel pre-tokenizers with use_regex = true.</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private readonly BpeTokenizer _tokenizer;
    private readonly Dictionary<int, string> _pieces;
    private readonly HashSet<int> _special;

    public int? BosId { get; }
    public int? EosId { get; }
    public int VocabularySize => _pieces.Count;

    /// <summary>From GGUF's "gpt2" tokenizer: tokenizer.ggml.tokens (byte-level strings), .merges ("a b") and the
    /// pre-tokenizer regex for tokenizer.ggml.pre; token_type 3 (control) marks special tokens.</summary>
    public ByteLevelBpeTextTokenizer(IReadOnlyList<string> tokens, IReadOnlyList<string> merges, IReadOnlyList<int>? tokenTypes,
        string pattern, int? bosId, int? eosId)
    {
        var vocab = tokens.Select((t, i) => new KeyValuePair<string, int>(t, i)).ToList();
        var special = new Dictionary<string, int>();
        if (tokenTypes != null)
            for (int i = 0; i < tokens.Count && i < tokenTypes.Count; i++)
                if (tokenTypes[i] == 3) special[tokens[i]] = i;
        _tokenizer = BpeTokenizer.Create(new BpeOptions(vocab.Where(kv => !special.ContainsKey(kv.Key)))
        {
            Merges = merges, ByteLevel = true, SpecialTokens = special,
            PreTokenizer = new RegexPreTokenizer(new Regex(pattern, RegexOptions.Compiled), special),
        });
        _pieces = vocab.ToDictionary(kv => kv.Value, kv => kv.Key);
        _special = [.. special.Values];
        BosId = bosId; EosId = eosId;
    }

    /// <summary>Qwen2's pre-tokenizer pattern (GGUF tokenizer.ggml.pre "qwen2"): Llama 3's, but every digit on its own.</summary>
    public const string Qwen2Pattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>Llama 3's pre-tokenizer pattern (GGUF tokenizer.ggml.pre "llama-bpe").</summary>
    public const string Llama3Pattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    public ByteLevelBpeTextTokenizer(string path, int? bosId = null, int? eosId = null)
    {
        JsonElement root;
        try { root = JsonDocument.Parse(File.ReadAllText(path)).RootElement; }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON", e); }
        var model = root.GetProperty("model");
        string type = model.TryGetProperty("type", out var t) ? t.GetString() ?? "" : "";
        if (type != "BPE") throw new InvalidDataException($"{path}: tokenizer model type '{type}' is not supported (byte-level BPE is)");
        if (!IsByteLevel(root))
            throw new InvalidDataException($"{path}: this BPE tokenizer is not byte-level; use the model's tokenizer.model " +
                $"(SentencePiece) instead");

        var vocab = model.GetProperty("vocab").EnumerateObject().Select(p => new KeyValuePair<string, int>(p.Name,
            p.Value.GetInt32())).ToList();
        var merges = model.GetProperty("merges").EnumerateArray()
            .Select(m => m.ValueKind == JsonValueKind.Array ? $"{m[0].GetString()} {m[1].GetString()}" : m.GetString()!).ToList();
        var special = new Dictionary<string, int>();
        if (root.TryGetProperty("added_tokens", out var added))
            foreach (var a in added.EnumerateArray())
                special[a.GetProperty("content").GetString()!] = a.GetProperty("id").GetInt32();

        var pattern = FindSplitPattern(root.GetProperty("pre_tokenizer")) ?? Gpt2Pattern;
        _tokenizer = BpeTokenizer.Create(new BpeOptions(vocab)
        {
            Merges = merges,
            ByteLevel = true,
            SpecialTokens = special,
            PreTokenizer = new RegexPreTokenizer(new Regex(pattern, RegexOptions.Compiled), special),
        });
        _pieces = vocab.ToDictionary(kv => kv.Value, kv => kv.Key);
        foreach (var (k, v) in special) _pieces[v] = k;
        _special = [.. special.Values];
        BosId = bosId; EosId = eosId;
    }

    private static bool IsByteLevel(JsonElement root)
    {
        bool Has(JsonElement e) => e.ValueKind == JsonValueKind.Object &&
            ((e.TryGetProperty("type", out var t) && t.GetString() == "ByteLevel") ||
             (e.TryGetProperty("pretokenizers", out var list) && list.EnumerateArray().Any(Has)) ||
             (e.TryGetProperty("decoders", out var dl) && dl.EnumerateArray().Any(Has)));
        return (root.TryGetProperty("pre_tokenizer", out var p) && Has(p)) || (root.TryGetProperty("decoder", out var d) && Has(d));
    }

    private static string? FindSplitPattern(JsonElement e)
    {
        if (e.ValueKind != JsonValueKind.Object) return null;
        if (e.TryGetProperty("type", out var t) && t.GetString() == "Split" && e.TryGetProperty("pattern", out var p)
            && p.TryGetProperty("Regex", out var r))
            return r.GetString();
        if (e.TryGetProperty("pretokenizers", out var list))
            foreach (var item in list.EnumerateArray())
                if (FindSplitPattern(item) is { } found) return found;
        return null;
    }

    public IReadOnlyList<int> Encode(string text, bool addBos = false)
    {
        var ids = _tokenizer.EncodeToIds(text);
        return addBos && BosId is int bos ? [bos, .. ids] : ids;
    }

    public string Decode(IEnumerable<int> ids) => _tokenizer.Decode(ids.Where(i => !_special.Contains(i))) ?? "";
    public string Piece(int id) => _pieces.TryGetValue(id, out var p) ? p : $"<{id}>";
}
