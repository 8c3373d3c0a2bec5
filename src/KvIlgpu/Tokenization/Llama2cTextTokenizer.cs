using System.Text;

namespace KvIlgpu.Tokenization;

/// <summary>A score-merge (SentencePiece BPE) tokenizer from a piece list with merge scores: llama2.c's tokenizer.bin
/// (int32 max_token_length, then per token a float32 score, an int32 byte length and the bytes), or the "llama"
/// tokenizer inside a GGUF file (tokenizer.ggml.tokens and .scores, spaces as U+2581). Encoding follows run.c and
/// llama.cpp: a dummy-prefix space, one token per UTF-8 character (byte tokens &lt;0xXX&gt; when the character is
/// unknown), then repeatedly merge the adjacent pair with the best score. No library reads these formats directly.</summary>
internal sealed class Llama2cTextTokenizer : ITextTokenizer
{
    private readonly string[] _vocab;
    private readonly float[] _scores;
    private readonly Dictionary<string, int> _ids = new(StringComparer.Ordinal);
    private readonly Dictionary<byte, int> _byteTokens = [];
    private readonly string _space;

    public int? BosId { get; }
    public int? EosId { get; }
    public int VocabularySize => _vocab.Length;

    /// <summary>From a piece list (GGUF): space is how the vocabulary writes a space ("▁" for SentencePiece).</summary>
    public Llama2cTextTokenizer(IReadOnlyList<string> pieces, IReadOnlyList<float> scores, int? bosId, int? eosId, string space = "\u2581")
    {
        _vocab = [.. pieces];
        _scores = [.. scores];
        _space = space;
        BosId = bosId; EosId = eosId;
        Index();
    }

    private void Index()
    {
        for (int i = 0; i < _vocab.Length; i++)
        {
            _ids.TryAdd(_vocab[i], i);
            var p = _vocab[i];
            if (p.Length == 6 && p.StartsWith("<0x", StringComparison.Ordinal) && p.EndsWith('>')
                && byte.TryParse(p.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out byte b))
                _byteTokens.TryAdd(b, i);
        }
        // Text falls back to byte pieces where no merge covers it, so all 256 must be there (a damaged piece would only
        // show when some text needs it).
        if (_byteTokens.Count != 256)
        {
            int missing = Enumerable.Range(0, 256).First(b => !_byteTokens.ContainsKey((byte)b));
            throw new InvalidDataException($"the vocabulary has {_byteTokens.Count} of the 256 byte pieces (<0x{missing:X2}> is missing)");
        }
    }

    public Llama2cTextTokenizer(string path, int vocabSize)
    {
        _space = " ";
        BosId = 1; EosId = 2;
        using var r = new BinaryReader(File.OpenRead(path));
        try
        {
            r.ReadInt32(); // max_token_length
            _vocab = new string[vocabSize];
            _scores = new float[vocabSize];
            for (int i = 0; i < vocabSize; i++)
            {
                _scores[i] = r.ReadSingle();
                int len = r.ReadInt32();
                if (len < 0 || len > 1024) throw new InvalidDataException($"{path}: token {i} has implausible length {len}");
                _vocab[i] = Encoding.UTF8.GetString(r.ReadBytes(len));
            }
            Index();
        }
        catch (EndOfStreamException)
        {
            throw new InvalidDataException($"{path}: truncated tokenizer.bin (expected {vocabSize} tokens)");
        }
    }

    public IReadOnlyList<int> Encode(string text, bool addBos = false)
    {
        var tokens = new List<int>();
        if (addBos && BosId is int bos) tokens.Add(bos);
        if (text.Length == 0) return tokens;
        int start = tokens.Count;
        if (_ids.TryGetValue(_space, out var space)) tokens.Add(space);
        foreach (var c in StringInfoEnumerator(text))
        {
            var ch = c == " " ? _space : c;
            if (_ids.TryGetValue(ch, out var id)) tokens.Add(id);
            else foreach (var b in Encoding.UTF8.GetBytes(ch))
                tokens.Add(_byteTokens.TryGetValue(b, out var bt) ? bt
                    : throw new InvalidDataException($"the vocabulary has no piece for byte 0x{b:X2}"));
        }
        while (true)
        {
            float best = float.NegativeInfinity;
            int bestId = -1, bestIndex = -1;
            for (int i = start; i < tokens.Count - 1; i++)
            {
                if (_ids.TryGetValue(_vocab[tokens[i]] + _vocab[tokens[i + 1]], out var id) && _scores[id] > best)
                {
                    best = _scores[id]; bestId = id; bestIndex = i;
                }
            }
            if (bestIndex < 0) break;
            tokens[bestIndex] = bestId;
            tokens.RemoveAt(bestIndex + 1);
        }
        return tokens;
    }

    private static IEnumerable<string> StringInfoEnumerator(string text)
    {
        for (int i = 0; i < text.Length; i++)
        {
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length) { yield return text.Substring(i, 2); i++; }
            else yield return text[i].ToString();
        }
    }

    public string Decode(IEnumerable<int> ids)
    {
        var bytes = new List<byte>();
        int prev = -1;
        foreach (var id in ids)
        {
            if (id == BosId || id == EosId) { prev = id; continue; }
            var piece = _vocab[id];
            if (piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece.EndsWith('>'))
                bytes.Add(Convert.ToByte(piece.Substring(3, 2), 16));
            else bytes.AddRange(Encoding.UTF8.GetBytes(piece.Replace(_space, " ")));
            prev = id;
        }
        var text = Encoding.UTF8.GetString(bytes.ToArray());
        // The dummy-prefix space that Encode adds is not part of the text.
        return text.StartsWith(' ') ? text[1..] : text;
    }

    public string Piece(int id) => _vocab[id];
}
