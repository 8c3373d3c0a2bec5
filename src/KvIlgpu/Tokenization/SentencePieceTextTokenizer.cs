using Microsoft.ML.Tokenizers;

namespace KvIlgpu.Tokenization;

/// <summary>A SentencePiece tokenizer.model (Llama 2, Mistral) through Microsoft.ML.Tokenizers.</summary>
internal sealed class SentencePieceTextTokenizer : ITextTokenizer
{
    private readonly SentencePieceTokenizer _tokenizer;
    private readonly Dictionary<int, string> _pieces;

    public SentencePieceTextTokenizer(string path)
    {
        using var s = File.OpenRead(path);
        try { _tokenizer = SentencePieceTokenizer.Create(s, false, false); }
        catch (Exception e) when (e is not IOException)
        {
            throw new InvalidDataException($"{path}: not a SentencePiece model ({e.Message})", e);
        }
        _pieces = _tokenizer.Vocabulary.ToDictionary(kv => kv.Value, kv => kv.Key);
    }

    public IReadOnlyList<int> Encode(string text, bool addBos = false)
    {
        var ids = _tokenizer.EncodeToIds(text);
        return addBos ? [_tokenizer.BeginningOfSentenceId, .. ids] : ids;
    }

    public string Decode(IEnumerable<int> ids) => _tokenizer.Decode(ids.Where(i => i != BosId && i != EosId)) ?? "";
    public string Piece(int id) => _pieces.TryGetValue(id, out var p) ? p : $"<{id}>";
    public int? BosId => _tokenizer.BeginningOfSentenceId;
    public int? EosId => _tokenizer.EndOfSentenceId;
    public int VocabularySize => _pieces.Count;
}
