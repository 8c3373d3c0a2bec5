namespace KvIlgpu.Tokenization;

/// <summary>Turns a growing list of ids into text pieces, emitting only complete characters. Decoding starts a few
/// prompt tokens earlier and emits only what follows their text, so the space before the first generated word survives
/// (SentencePiece decoders drop the leading space of whatever they decode first).</summary>
internal sealed class TextStreamer
{
    private const int ContextTokens = 4;
    private readonly ITextTokenizer _tokenizer;
    private readonly List<int> _ids;
    private readonly int _context;
    private readonly string _contextText;
    private string _emitted = "";

    public TextStreamer(ITextTokenizer tokenizer, IReadOnlyList<int> prompt)
    {
        _tokenizer = tokenizer;
        _ids = prompt.Skip(Math.Max(0, prompt.Count - ContextTokens)).ToList();
        _context = _ids.Count;
        _contextText = tokenizer.Decode(_ids);
    }

    public string Add(int id)
    {
        _ids.Add(id);
        var full = Text;
        if (!full.StartsWith(_emitted, StringComparison.Ordinal) || full.EndsWith('\uFFFD')) return "";
        var piece = full[_emitted.Length..];
        _emitted = full;
        return piece;
    }

    /// <summary>The generated text so far.</summary>
    public string Text
    {
        get
        {
            var full = _tokenizer.Decode(_ids);
            return full.StartsWith(_contextText, StringComparison.Ordinal) ? full[_contextText.Length..]
                : _tokenizer.Decode(_ids.Skip(_context));
        }
    }
}
