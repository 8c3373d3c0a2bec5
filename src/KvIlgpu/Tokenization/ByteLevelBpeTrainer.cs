using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace KvIlgpu.Tokenization;

/// <summary>Trains a byte-level BPE tokenizer (GPT-2 style: 256 byte symbols, GPT-2's pre-tokenizer regex, greedy
/// merges of the most frequent adjacent pair) and writes it as a Hugging Face tokenizer.json that
/// ByteLevelBpeTextTokenizer (Microsoft.ML.Tokenizers) loads. Pair counts are updated incrementally, so thousands of
/// merges over a million words take seconds.</summary>
internal static class ByteLevelBpeTrainer
{
    public sealed record Result(IReadOnlyList<string> Vocabulary, IReadOnlyList<(string, string)> Merges,
        IReadOnlyList<string> SpecialTokens);

    /// <summary>GPT-2's bytes_to_unicode: printable bytes map to themselves, the others to U+0100 upwards.</summary>
    public static char[] ByteToChar()
    {
        var map = new char[256];
        int n = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            map[b] = printable ? (char)b : (char)(256 + n++);
        }
        return map;
    }

    public static Result Train(IEnumerable<string> texts, int merges, IReadOnlyList<string> specialTokens, IProgress<(int Done,
        int Total)>? progress = null)
    {
        var byteChar = ByteToChar();
        var regex = new Regex(ByteLevelBpeTextTokenizer.Gpt2Pattern, RegexOptions.Compiled);
        var wordCounts = new Dictionary<string, int>();
        foreach (var text in texts)
            foreach (Match m in regex.Matches(text))
            {
                var mapped = new string(Encoding.UTF8.GetBytes(m.Value).Select(b => byteChar[b]).ToArray());
                wordCounts[mapped] = wordCounts.GetValueOrDefault(mapped) + 1;
            }
        var words = wordCounts.Keys.Select(w => w.Select(c => c.ToString()).ToList()).ToList();
        var counts = wordCounts.Values.ToArray();
        var pairCounts = new Dictionary<(string, string), long>();
        var pairWords = new Dictionary<(string, string), HashSet<int>>();
        void Count(int wi, int sign)
        {
            var w = words[wi];
            for (int i = 0; i + 1 < w.Count; i++)
            {
                var p = (w[i], w[i + 1]);
                pairCounts[p] = pairCounts.GetValueOrDefault(p) + sign * counts[wi];
                if (sign > 0) { if (!pairWords.TryGetValue(p, out var set)) pairWords[p] = set = []; set.Add(wi); }
            }
        }
        for (int wi = 0; wi < words.Count; wi++) Count(wi, +1);

        var vocab = Enumerable.Range(0, 256).Select(b => byteChar[b].ToString()).ToList();
        var mergeList = new List<(string, string)>();
        for (int m = 0; m < merges; m++)
        {
            // Most frequent pair; ties broken by the pair's text so training is deterministic.
            (string, string) best = default;
            long bestCount = 0;
            foreach (var (p, c) in pairCounts)
                if (c > bestCount || (c == bestCount && c > 0 && string.CompareOrdinal(p.Item1 + " " + p.Item2, best.Item1 + " "
                    + best.Item2) < 0))
                    (best, bestCount) = (p, c);
            if (bestCount < 2) break;
            mergeList.Add(best);
            string merged = best.Item1 + best.Item2;
            vocab.Add(merged);
            foreach (var wi in pairWords[best].ToList())
            {
                Count(wi, -1);
                var w = words[wi];
                for (int i = 0; i + 1 < w.Count; i++)
                    if (w[i] == best.Item1 && w[i + 1] == best.Item2) { w[i] = merged; w.RemoveAt(i + 1); }
                Count(wi, +1);
            }
            pairCounts.Remove(best);
            pairWords.Remove(best);
            progress?.Report((m + 1, merges));
        }
        return new Result(vocab, mergeList, specialTokens);
    }

    /// <summary>Writes tokenizer.json: BPE model (vocab, merges), GPT-2 split + ByteLevel pre-tokenizer, ByteLevel
    /// decoder, and the special tokens after the learned vocabulary.</summary>
    public static void Save(Result r, string path)
    {
        var vocab = new Dictionary<string, int>();
        foreach (var v in r.Vocabulary) vocab.TryAdd(v, vocab.Count);
        var added = r.SpecialTokens.Select((t, i) => new { id = vocab.Count + i, content = t, special = true }).ToList();
        var json = new
        {
            version = "1.0",
            added_tokens = added,
            pre_tokenizer = new
            {
                type = "Sequence",
                pretokenizers = new object[]
                {
                    new { type = "Split", pattern = new { Regex = ByteLevelBpeTextTokenizer.Gpt2Pattern }, behavior = "Isolated",
                        invert = false },
                    new { type = "ByteLevel", add_prefix_space = false, trim_offsets = true, use_regex = false },
                },
            },
            decoder = new { type = "ByteLevel" },
            model = new { type = "BPE", vocab, merges = r.Merges.Select(m => $"{m.Item1} {m.Item2}").ToArray() },
        };
        File.WriteAllText(path, JsonSerializer.Serialize(json));
    }
}
