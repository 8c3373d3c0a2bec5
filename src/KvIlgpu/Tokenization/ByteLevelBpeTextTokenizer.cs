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
        string pattern, int? bosId, int? eosId) : this(tokens, merges, tokenTypes, [pattern], bosId, eosId)
    {
    }

    /// <summary>As the single-pattern constructor, with patterns applied in sequence (see
    /// <see cref="SequentialRegexPreTokenizer"/>).</summary>
    public ByteLevelBpeTextTokenizer(IReadOnlyList<string> tokens, IReadOnlyList<string> merges, IReadOnlyList<int>? tokenTypes,
        IReadOnlyList<string> patterns, int? bosId, int? eosId)
    {
        var vocab = tokens.Select((t, i) => new KeyValuePair<string, int>(t, i)).ToList();
        var special = new Dictionary<string, int>();
        if (tokenTypes != null)
            for (int i = 0; i < tokens.Count && i < tokenTypes.Count; i++)
                if (tokenTypes[i] == 3) special[tokens[i]] = i;
        _tokenizer = BpeTokenizer.Create(new BpeOptions(vocab.Where(kv => !special.ContainsKey(kv.Key)))
        {
            Merges = merges, ByteLevel = true, SpecialTokens = special,
            PreTokenizer = patterns.Count == 1 ? new RegexPreTokenizer(new Regex(patterns[0], RegexOptions.Compiled), special)
                : new SequentialRegexPreTokenizer(patterns, special),
        });
        _pieces = vocab.ToDictionary(kv => kv.Value, kv => kv.Key);
        _special = [.. special.Values];
        BosId = bosId; EosId = eosId;
    }

    /// <summary>Qwen2's pre-tokenizer pattern (GGUF tokenizer.ggml.pre "qwen2"): Llama 3's, but every digit on its own.</summary>
    public const string Qwen2Pattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>SmolLM's pre-tokenization (GGUF tokenizer.ggml.pre "smollm", and llama.cpp's starcoder, refact,
    /// command-r, codeshell, exaone and minerva): every digit on its own, then GPT-2's pattern on each piece.</summary>
    public static readonly string[] SmolLmPatterns = [@"\p{N}", @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"];

    /// <summary>DeepSeek Coder's pre-tokenization (GGUF tokenizer.ggml.pre "deepseek-coder"): line breaks, letters with an
    /// optional leading space, punctuation likewise, CJK runs, then single digits, each regex splitting the pieces of the
    /// one before.</summary>
    public static readonly string[] DeepSeekCoderPatterns =
        ["[\r\n]", @"\s?\p{L}+", @"\s?\p{P}+", "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+", @"\p{N}"];

    /// <summary>DeepSeek LLM's pre-tokenization (GGUF tokenizer.ggml.pre "deepseek-llm"), llama.cpp's six regexes in turn: line
    /// breaks; runs of cased letters (its explicit class, Latin to Adlam) with an optional leading space; runs of ASCII and
    /// full-width punctuation and symbols likewise; trailing whitespace; CJK runs; digit runs. Its letter class reaches past
    /// the 16-bit range (Deseret, Osage, Old Hungarian, Warang Citi, Adlam), which a .NET character class cannot hold, so
    /// those ranges are written as surrogate pairs; $ is \z, since .NET's $ also matches before a final line break.
    /// </summary>
    public static readonly string[] DeepSeekLlmPatterns =
    [
        "[\r\n]",
        "\\s?(?:[\u0041-\u005A\u0061-\u007A\u00B5\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u01BA\u01BC-\u01BF\u01C4-\u0293"
            + "\u0295-\u02AF\u0370-\u0373\u0376\u0377\u037B-\u037D\u037F\u0386\u0388-\u038A\u038C\u038E-\u03A1\u03A3-\u03F5"
            + "\u03F7-\u0481\u048A-\u052F\u0531-\u0556\u10A0-\u10C5\u13A0-\u13F5\u13F8-\u13FD\u1C90-\u1CBA\u1CBD-\u1CBF\u1D00"
            + "-\u1D2B\u1D6B-\u1D77\u1D79-\u1D9A\u1E00-\u1F15\u1F18-\u1F1D\u1F20-\u1F45\u1F48-\u1F4D\u1F50-\u1F57\u1F59\u1F5B"
            + "\u1F5D\u1F5F-\u1F7D\u1F80-\u1FB4\u1FB6-\u1FBC\u1FBE\u1FC2-\u1FC4\u1FC6-\u1FCC\u1FD0-\u1FD3\u1FD6-\u1FDB\u1FE0-"
            + "\u1FEC\u1FF2-\u1FF4\u1FF6-\u1FFC\u2102\u2107\u210A-\u2113\u2115\u2119-\u211D\u2124\u2126\u2128\u212A-\u212D"
            + "\u212F-\u2134\u2139\u213C-\u213F\u2145-\u2149\u214E\u2183\u2184\u2C00-\u2C7B\u2C7E-\u2CE4\u2CEB-\u2CEE\u2CF2"
            + "\u2CF3\uA640-\uA66D\uA680-\uA69B\uA722-\uA76F\uA771-\uA787\uA78B-\uA78E\uAB70-\uABBF\uFB00-\uFB06\uFB13-\uFB17"
            + "\uFF21-\uFF3A\uFF41-\uFF5A]|\uD801[\uDC00-\uDC4F\uDCB0-\uDCD3\uDCD8-\uDCFB]|\uD803[\uDC80-\uDCB2\uDCC0-\uDCF2]"
            + "|\uD806[\uDCA0-\uDCDF]|\uD83A[\uDD00-\uDD43])+",
        "\\s?[!-/:-~\uFF01-\uFF0F\uFF1A-\uFF5E\u2018-\u201F\u3000-\u3002]+",
        "\\s+\\z",
        "[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+",
        "\\p{N}+",
    ];

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

        var patterns = SplitPatterns(path, root.GetProperty("pre_tokenizer"));
        if (patterns.Count == 0) patterns.Add(Gpt2Pattern);
        _tokenizer = BpeTokenizer.Create(new BpeOptions(vocab)
        {
            Merges = merges,
            ByteLevel = true,
            SpecialTokens = special,
            PreTokenizer = patterns.Count == 1 ? new RegexPreTokenizer(new Regex(patterns[0], RegexOptions.Compiled), special)
                : new SequentialRegexPreTokenizer(patterns, special),
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

    /// <summary>The regexes a Hugging Face pre_tokenizer splits by, in order: a Split's regex (isolated pieces), Digits
    /// (each digit alone, or runs of digits), a ByteLevel with use_regex (GPT-2's pattern), and a Sequence's members in
    /// turn. Other kinds split nothing; a Split that drops or merges its matches is refused, naming the file.</summary>
    private static List<string> SplitPatterns(string path, JsonElement e)
    {
        var patterns = new List<string>();
        if (e.ValueKind != JsonValueKind.Object) return patterns;
        string? type = e.TryGetProperty("type", out var t) ? t.GetString() : null;
        switch (type)
        {
            case "Sequence" when e.TryGetProperty("pretokenizers", out var list):
                foreach (var item in list.EnumerateArray()) patterns.AddRange(SplitPatterns(path, item));
                break;
            case "Split" when e.TryGetProperty("pattern", out var p):
                string? behavior = e.TryGetProperty("behavior", out var b) ? b.GetString() : "Isolated";
                if (behavior != "Isolated")
                    throw new InvalidDataException($"{path}: pre_tokenizer Split with behavior '{behavior}' is not supported " +
                        "(Isolated is)");
                if (p.TryGetProperty("Regex", out var r)) patterns.Add(r.GetString()!);
                else if (p.TryGetProperty("String", out var s)) patterns.Add(Regex.Escape(s.GetString()!));
                break;
            case "Digits":
                patterns.Add(e.TryGetProperty("individual_digits", out var single) && single.GetBoolean() ? @"\p{N}" : @"\p{N}+");
                break;
            case "ByteLevel" when !e.TryGetProperty("use_regex", out var useRegex) || useRegex.GetBoolean():
                patterns.Add(Gpt2Pattern);
                break;
        }
        return patterns;
    }

    public IReadOnlyList<int> Encode(string text, bool addBos = false)
    {
        var ids = _tokenizer.EncodeToIds(text);
        return addBos && BosId is int bos ? [bos, .. ids] : ids;
    }

    public string Decode(IEnumerable<int> ids) => _tokenizer.Decode(ids.Where(i => !_special.Contains(i))) ?? "";
    public string Piece(int id) => _pieces.TryGetValue(id, out var p) ? p : $"<{id}>";
}
