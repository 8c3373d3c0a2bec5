using System.Text;

namespace KvIlgpu.Tokenization;

/// <summary>llama2.c's tokenizer.bin: int32 max_token_length, then per token a float32 merge score, an int32 byte
/// length and the bytes. Encoding follows run.c: a dummy-prefix space, one token per UTF-8 character (byte tokens
/// &lt;0xXX&gt; at id byte + 3 when the character is unknown), then repeatedly merge the adjacent pair with the best
/// score. No library reads this format, so it is implemented here.</summary>
public sealed class Llama2cTextTokenizer : ITextTokenizer
{
    private readonly string[] _vocab;
    private readonly float[] _scores;
    private readonly Dictionary<string, int> _ids = new(StringComparer.Ordinal);

    public int? BosId => 1;
    public int? EosId => 2;
    public int VocabularySize => _vocab.Length;

    public Llama2cTextTokenizer(string path, int vocabSize)
    {
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
                _ids.TryAdd(_vocab[i], i);
            }
        }
        catch (EndOfStreamException)
        {
            throw new InvalidDataException($"{path}: truncated tokenizer.bin (expected {vocabSize} tokens)");
        }
    }

    public IReadOnlyList<int> Encode(string text, bool addBos = false)
    {
        var tokens = new List<int>();
        if (addBos) tokens.Add(1);
        if (text.Length == 0) return tokens;
        int start = tokens.Count;
        if (_ids.TryGetValue(" ", out var space)) tokens.Add(space);
        var e = StringInfoEnumerator(text);
        foreach (var ch in e)
        {
            if (_ids.TryGetValue(ch, out var id)) tokens.Add(id);
            else foreach (var b in Encoding.UTF8.GetBytes(ch)) tokens.Add(b + 3);
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
            if (id == 1 || id == 2) { prev = id; continue; }
            var piece = _vocab[id];
            if (piece.Length == 6 && piece.StartsWith("<0x") && piece.EndsWith('>'))
                bytes.Add(Convert.ToByte(piece.Substring(3, 2), 16));
            else bytes.AddRange(Encoding.UTF8.GetBytes(bytes.Count == 0 && prev != 1 && piece.StartsWith(' ') ? piece[1..] : piece));
            prev = id;
        }
        return Encoding.UTF8.GetString(bytes.ToArray());
    }

    public string Piece(int id) => _vocab[id];
}
