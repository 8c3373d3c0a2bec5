using System.Globalization;
using KvIlgpu.Tokenization;
using KvIlgpu.Training;

namespace KvIlgpu.Evaluation;

/// <summary>The held-out text <c>eval</c> scores, as token ids: a plain text file (encoded with the model's tokenizer),
/// a <c>.ids</c> file of token ids (separated by commas or white space), or the Brown corpus <c>.tgz</c> itself, of
/// which only the documents that training holds out for validation are read (the last
/// <see cref="TrainingConfig.ValidationDocuments"/>, 10 by default), so a model trained on the rest is scored on text
/// it has not seen.</summary>
public static class EvaluationCorpus
{
    /// <summary>Reads a corpus file as token ids; a text corpus needs the tokenizer.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">A .ids file holds something other than token ids.</exception>
    /// <exception cref="InvalidOptionException">A text corpus and no tokenizer.</exception>
    public static IReadOnlyList<int> Load(string path, ITextTokenizer? tokenizer) => Load(path, tokenizer, heldOut: true);

    /// <summary>Reads calibration text as token ids: like <see cref="Load(string, ITextTokenizer?)"/>, except that of the
    /// Brown corpus .tgz only the training documents are read (never the held-out ones that <c>eval</c> scores).</summary>
    public static IReadOnlyList<int> LoadCalibration(string path, ITextTokenizer? tokenizer) => Load(path, tokenizer, heldOut: false);

    private static IReadOnlyList<int> Load(string path, ITextTokenizer? tokenizer, bool heldOut)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"corpus not found: {path}", path);
        if (path.EndsWith(".ids", StringComparison.OrdinalIgnoreCase))
            return [.. File.ReadAllText(path).Split([',', ' ', '\n', '\r', '\t'], StringSplitOptions.RemoveEmptyEntries)
                .Select(v => int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out var id) ? id
                    : throw new InvalidDataException($"{path}: '{v}' is not a token id"))];
        if (tokenizer == null) throw new InvalidOptionException("Corpus",
            $"the model has no tokenizer to encode the text of {path}: give a .ids file of token ids");
        return tokenizer.Encode(heldOut ? Text(path) : TrainingText(path));
    }

    /// <summary>The text of a corpus file: the file itself, or the Brown corpus .tgz without its held-out documents.</summary>
    public static string TrainingText(string path)
    {
        if (!path.EndsWith(".tgz", StringComparison.OrdinalIgnoreCase)) return File.ReadAllText(path);
        var docs = BrownCorpus.Read(path);
        int heldOut = new TrainingConfig().ValidationDocuments;
        return string.Join("\n\n", docs.Take(docs.Count - heldOut).Select(d => d.Text));
    }

    /// <summary>The text of a corpus file: the file itself, or the held-out documents of the Brown corpus .tgz.</summary>
    public static string Text(string path)
    {
        if (!path.EndsWith(".tgz", StringComparison.OrdinalIgnoreCase)) return File.ReadAllText(path);
        var docs = BrownCorpus.Read(path);
        int heldOut = new TrainingConfig().ValidationDocuments;
        return string.Join("\n\n", docs.Skip(docs.Count - heldOut).Select(d => d.Text));
    }
}
