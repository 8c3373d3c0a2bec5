using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace KvIlgpu.Tokenization;

/// <summary>Pre-tokenization by several regexes in sequence, as llama.cpp applies a tokenizer.ggml.pre's expressions and
/// as Hugging Face applies a Sequence of isolating splits: special tokens are cut out first; then each regex in turn
/// splits every piece so far into its matches and the text between them (kept as pieces of its own), each match
/// searched within its piece alone (lookarounds see the piece's ends, not its neighbours).</summary>
internal sealed class SequentialRegexPreTokenizer : PreTokenizer
{
    private readonly Regex[] _regexes;
    private readonly Regex? _special;

    public SequentialRegexPreTokenizer(IEnumerable<string> patterns, IReadOnlyDictionary<string, int>? specialTokens)
    {
        _regexes = [.. patterns.Select(p => new Regex(p, RegexOptions.Compiled))];
        if (specialTokens is { Count: > 0 })
            _special = new Regex(string.Join("|", specialTokens.Keys.OrderByDescending(k => k.Length).Select(Regex.Escape)),
                RegexOptions.Compiled);
    }

    public override IEnumerable<(int Offset, int Length)> PreTokenize(string text) => Split(text);

    public override IEnumerable<(int Offset, int Length)> PreTokenize(ReadOnlySpan<char> text) => Split(text.ToString());

    /// <summary>The pieces of text as (offset, length), in order, covering it exactly.</summary>
    public List<(int Offset, int Length)> Split(string text)
    {
        var result = new List<(int, int)>();
        if (string.IsNullOrEmpty(text)) return result;
        int at = 0;
        if (_special != null)
            foreach (Match m in _special.Matches(text))
            {
                if (m.Index > at) result.AddRange(Regular(text, at, m.Index - at));
                result.Add((m.Index, m.Length));
                at = m.Index + m.Length;
            }
        if (at < text.Length) result.AddRange(Regular(text, at, text.Length - at));
        return result;
    }

    private List<(int Offset, int Length)> Regular(string text, int offset, int length)
    {
        var pieces = new List<(int Offset, int Length)> { (offset, length) };
        foreach (var regex in _regexes)
        {
            var next = new List<(int, int)>();
            foreach (var (start, count) in pieces)
            {
                int at = start, end = start + count;
                for (var m = regex.Match(text, start, count); m.Success && m.Length > 0; m = m.NextMatch())
                {
                    if (m.Index > at) next.Add((at, m.Index - at));
                    next.Add((m.Index, m.Length));
                    at = m.Index + m.Length;
                }
                if (at < end) next.Add((at, end - at));
            }
            pieces = next;
        }
        return pieces;
    }
}
