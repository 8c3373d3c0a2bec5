using System.Text;
using System.Text.Json;
using KvIlgpu.Models;
using KvIlgpu.Tests.Support;
using KvIlgpu.Tokenization;

namespace KvIlgpu.Tests.Tokenization;

public class TokenizerTests
{
    /// <summary>Mistral's real tokenizer.model against the ids spm_encode produced (../shared/golden/tokenizers).</summary>
    [SharedFact]
    public void SentencePiece_adapter_reproduces_reference_ids_and_decodes_back()
    {
        var golden = JsonDocument.Parse(File.ReadAllText(SharedData.Path_("golden", "tokenizers", "mistral-v1.json"))).RootElement;
        var tok = TokenizerLoader.Open(SharedData.Path_("golden", "tokenizers", "mistral-v1.model"));
        int cases = 0;
        foreach (var c in golden.GetProperty("cases").EnumerateArray())
        {
            string text = c.GetProperty("text").GetString()!;
            var expected = c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            var ids = tok.Encode(text);
            Assert.Equal(expected, ids);
            Assert.Equal(c.GetProperty("pieces").EnumerateArray().Select(e => e.GetString()).ToArray(), ids.Select(tok.Piece).ToArray());
            Assert.Equal(text, tok.Decode(ids));
            cases++;
        }
        Assert.True(cases >= 7);
        Assert.Equal(1, tok.Encode("hi", addBos: true)[0]);
    }

    /// <summary>Builds a GPT-2 style byte-level tokenizer.json: the 256 byte symbols, a few merges, special tokens.</summary>
    internal static string WriteByteLevelTokenizer(TempDir dir)
    {
        // GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to U+0100 upwards.
        var map = new Dictionary<int, char>();
        int n = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            map[b] = printable ? (char)b : (char)(256 + n++);
        }
        var vocab = new Dictionary<string, int>();
        for (int b = 0; b < 256; b++) vocab[map[b].ToString()] = b;
        string[] merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "r e", "Ġa n", "Ġan d"];
        foreach (var m in merges) vocab[m.Replace(" ", "")] = vocab.Count;
        var json = new
        {
            version = "1.0",
            added_tokens = new[] { new { id = vocab.Count, content = "<|begin_of_text|>", special = true }, new { id = vocab.Count + 1,
                content = "<|end_of_text|>", special = true } },
            pre_tokenizer = new
            {
                type = "Sequence", pretokenizers = new object[] {
                new { type = "Split", pattern = new { Regex = ByteLevelBpeTextTokenizer.Gpt2Pattern }, behavior = "Isolated",
                    invert = false },
                new { type = "ByteLevel", add_prefix_space = false, trim_offsets = true, use_regex = false } }
            },
            decoder = new { type = "ByteLevel" },
            model = new { type = "BPE", vocab, merges },
        };
        var path = dir.File("tokenizer.json");
        File.WriteAllText(path, JsonSerializer.Serialize(json));
        return path;
    }

    [Fact]
    public void Byte_level_bpe_tokenizer_json_round_trips_and_applies_merges()
    {
        using var dir = new TempDir();
        var tok = TokenizerLoader.Open(WriteByteLevelTokenizer(dir), bosId: 264, eosId: 265);
        foreach (var text in new[] { "the cat and the hat", "naïve café — 東京 🚀!", "  spaces\tand\nlines  " })
            Assert.Equal(text, tok.Decode(tok.Encode(text)));
        var ids = tok.Encode(" the and");
        Assert.Equal(["Ġthe", "Ġand"], ids.Select(tok.Piece).ToArray()); // merges applied, space as Ġ
        Assert.Equal(264, tok.Encode("x", addBos: true)[0]);
    }

    internal static string WriteLlama2cTokenizer(TempDir dir, out int vocabSize)
    {
        // Layout of llama2.c's tokenizer: <unk>, <s>, </s>, 256 byte tokens, then pieces with merge scores.
        var pieces = new List<(string, float)> { ("<unk>", 0), ("<s>", 0), ("</s>", 0) };
        for (int b = 0; b < 256; b++) pieces.Add(($"<0x{b:X2}>", 0));
        foreach (var (p, s) in new[] { (" ", -1f), ("h", -2f), ("e", -2f), ("l", -2f), ("o", -2f), ("w", -2f), ("r", -2f), ("d", -2f),
                     ("he", -3f), ("ll", -3f), (" w", -4f), ("hell", -5f), ("hello", -6f), (" he", -7f), (" hello", -8f), ("or", -9f) })
            pieces.Add((p, s));
        vocabSize = pieces.Count;
        var path = dir.File("tokenizer.bin");
        using var w = new BinaryWriter(File.Create(path));
        w.Write(16);
        foreach (var (p, s) in pieces) { var b = Encoding.UTF8.GetBytes(p); w.Write(s); w.Write(b.Length); w.Write(b); }
        return path;
    }

    [Fact]
    public void Llama2c_tokenizer_bin_merges_by_score_and_falls_back_to_bytes()
    {
        using var dir = new TempDir();
        var tok = TokenizerLoader.Open(WriteLlama2cTokenizer(dir, out int vocab), vocab);
        var ids = tok.Encode("hello world");
        Assert.Equal([" hello", " w", "or", "l", "d"], ids.Select(tok.Piece).ToArray());
        Assert.Equal("hello world", tok.Decode(ids));
        var unicode = tok.Encode("hé");
        Assert.Contains(unicode, id => tok.Piece(id) == "<0xC3>"); // é is not in the vocabulary: UTF-8 bytes
        Assert.Equal("hé", tok.Decode(unicode));
        Assert.Equal(1, tok.Encode("hello", addBos: true)[0]);
    }

    [Fact]
    public void Unknown_or_broken_tokenizer_files_are_reported_by_name()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("vocab.txt"), "x");
        Assert.Contains("vocab.txt", Assert.Throws<InvalidModelException>(() => TokenizerLoader.Open(dir.File("vocab.txt"))).Message);
        File.WriteAllBytes(dir.File("tokenizer.bin"), [1, 0, 0, 0, 0]);
        Assert.Contains("truncated", Assert.Throws<InvalidModelException>(() => TokenizerLoader.Open(dir.File("tokenizer.bin"),
            10)).Message);
    }
}
