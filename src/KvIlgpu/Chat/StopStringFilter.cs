using System.Text;

namespace KvIlgpu.Chat;

/// <summary>Streams generated text through stop strings, as OpenAI's <c>stop</c> and Microsoft.Extensions.AI's
/// StopSequences mean them for a stream: the text ends before the first stop string to be completed (generation stops
/// there, so a longer one that would have started earlier never completes); text that could still turn into one is held
/// back until it cannot. Each piece is searched only where a new match can start (the held-back tail and the new text), so a
/// reply costs time linear in its length.</summary>
public sealed class StopStringFilter
{
    private readonly string[] _stops;
    private readonly int _holdBack;
    private readonly StringBuilder _text = new();
    private int _sent;

    /// <param name="stops">The stop strings (empty ones are ignored).</param>
    public StopStringFilter(IEnumerable<string>? stops)
    {
        _stops = [.. (stops ?? []).Where(s => s.Length > 0)];
        _holdBack = _stops.Length == 0 ? 0 : _stops.Max(s => s.Length) - 1;
    }

    /// <summary>Whether a stop string has been seen (nothing more is accepted).</summary>
    public bool Stopped { get; private set; }

    /// <summary>All text accepted so far, up to (not including) a stop string.</summary>
    public string Text => _text.ToString();

    /// <summary>Adds a generated piece; returns the text that can be released now (possibly empty).</summary>
    public string Append(string piece)
    {
        if (Stopped) return "";
        int searchFrom = Math.Max(0, _text.Length - _holdBack);
        _text.Append(piece);
        if (_stops.Length > 0)
        {
            string window = _text.ToString(searchFrom, _text.Length - searchFrom);
            // The stop completed first (the earliest end), as if the text had come a character at a time; of stops that
            // end together, the longest.
            int first = -1, firstEnd = int.MaxValue;
            foreach (var stop in _stops)
            {
                int at = window.IndexOf(stop, StringComparison.Ordinal);
                if (at < 0) continue;
                int end = at + stop.Length;
                if (end < firstEnd || (end == firstEnd && at < first)) (first, firstEnd) = (at, end);
            }
            if (first >= 0)
            {
                _text.Length = searchFrom + first;
                Stopped = true;
                return Release(_text.Length);
            }
        }
        return Release(_text.Length - _holdBack);
    }

    /// <summary>At the end of generation: the text still held back.</summary>
    public string Flush() => Release(_text.Length);

    private string Release(int upTo)
    {
        if (upTo <= _sent) return "";
        string released = _text.ToString(_sent, upTo - _sent);
        _sent = upTo;
        return released;
    }
}
