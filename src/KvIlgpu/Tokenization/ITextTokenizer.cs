namespace KvIlgpu.Tokenization;

/// <summary>Text to token ids and back, whatever file the tokenizer came from.</summary>
public interface ITextTokenizer
{
    /// <summary>Token ids for the text; BOS first only when addBos is set.</summary>
    IReadOnlyList<int> Encode(string text, bool addBos = false);
    /// <summary>The text of a whole id sequence (special tokens are dropped).</summary>
    string Decode(IEnumerable<int> ids);
    /// <summary>The vocabulary string of each id, as stored.</summary>
    string Piece(int id);
    /// <summary>The beginning-of-sequence token, if the tokenizer has one.</summary>
    int? BosId { get; }
    /// <summary>The end-of-sequence token, if the tokenizer has one.</summary>
    int? EosId { get; }
    /// <summary>Ids the tokenizer knows (0 .. VocabularySize - 1).</summary>
    int VocabularySize { get; }
}
