using System.Text;

using KvIlgpu.Tasks;

namespace KvIlgpu.Training;

/// <summary>Long-range tasks that make attention reach far back, written as plain text around corpus filler:
/// passkey retrieval, multi-key needle retrieval and repeated-span copying. Each sample ends with its answer, so the
/// same text trains (next-token prediction) and evaluates (prompt = text before the answer).</summary>
internal static class SyntheticTasks
{
    public sealed record Sample(string Prompt, string Answer)
    {
        public string Text => Prompt + Answer;
    }

    /// <summary>A 5-digit pass key stated once at relative depth (0..1) of the filler, asked for at the end.</summary>
    public static Sample Passkey(string filler, double depth, Random rng)
    {
        string key = RetrievalTemplates.DrawPasskey(rng);
        return new Sample(Insert(filler, RetrievalTemplates.PasskeyNeedle(key), depth) + RetrievalTemplates.PasskeyQuestion, " " + key
            + ".");
    }

    /// <summary>Several "key: value" facts scattered through the filler (each at depth u^depthPower, u uniform in 0..1);
    /// one key is asked for.</summary>
    public static Sample MultiKeyNeedle(string filler, int keys, Random rng, double depthPower = 1)
    {
        var pairs = Enumerable.Range(0, keys).Select(_ => (Key: RetrievalTemplates.DrawNeedleName(rng),
            Value: RetrievalTemplates.DrawNeedleValue(rng)))
            .DistinctBy(p => p.Key).ToList();
        var text = filler;
        foreach (var (k, v) in pairs) text = Insert(text, RetrievalTemplates.NeedleFact(k, v), Math.Pow(rng.NextDouble(), depthPower));
        var asked = pairs[rng.Next(pairs.Count)];
        return new Sample(text + RetrievalTemplates.NeedleQuestion(asked.Key), $" {asked.Value}.");
    }

    /// <summary>A span of the filler repeated after a marker: the model must copy it from far back.</summary>
    public static Sample Copy(string filler, int spanWords, Random rng)
    {
        var words = filler.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        int start = rng.Next(0, Math.Max(1, words.Length - spanWords));
        var span = string.Join(" ", words.Skip(start).Take(spanWords));
        return new Sample($"Remember this: {span} ... {filler} Now repeat what you had to remember:", " " + span);
    }

    /// <summary>Filler of about chars characters made of 2-5 consecutive sentences of the text (from a random place),
    /// repeated in turn: long stretches of near-identical statements that a retrieval must look past.</summary>
    public static string RepeatedSentences(string text, int chars, Random rng)
    {
        var sentences = text.Split(". ", StringSplitOptions.RemoveEmptyEntries).Where(s => s.Length is > 10 and < 120).ToList();
        if (sentences.Count == 0) return text;
        int count = Math.Min(rng.Next(2, 6), sentences.Count), first = rng.Next(0, sentences.Count - count + 1);
        var sb = new StringBuilder();
        for (int i = 0; sb.Length < chars; i++) sb.Append(sentences[first + i % count].Trim()).Append(". ");
        return sb.ToString();
    }

    /// <summary>Inserts text at a sentence boundary near relative depth (0..1).</summary>
    public static string Insert(string filler, string text, double depth)
    {
        int at = (int)(filler.Length * Math.Clamp(depth, 0, 1));
        int boundary = filler.IndexOf(". ", at, StringComparison.Ordinal);
        at = boundary < 0 ? filler.Length : boundary + 1;
        return filler[..at] + text + filler[at..];
    }
}

