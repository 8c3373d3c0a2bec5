using System.Text.Json;
using KvIlgpu.Models;
using KvIlgpu.Tests.Support;
using KvIlgpu.Tokenization;

namespace KvIlgpu.Tests.Tokenization;

public class GgufTokenizerTests
{
    /// <summary>A SentencePiece-style vocabulary as llama.cpp stores it: control tokens, 256 byte pieces, then pieces
    /// with "▁" for spaces and merge scores.</summary>
    public static (string[] Tokens, float[] Scores) SentencePieceVocabulary()
    {
        var tokens = new List<string> { "<unk>", "<s>", "</s>" };
        var scores = new List<float> { 0, 0, 0 };
        for (int b = 0; b < 256; b++) { tokens.Add($"<0x{b:X2}>"); scores.Add(0); }
        foreach (var (p, sc) in new[] { ("▁", -1f), ("h", -2f), ("e", -2f), ("l", -2f), ("o", -2f), ("w", -2f), ("r", -2f), ("d", -2f),
                     ("he", -3f), ("ll", -3f), ("▁w", -4f), ("hell", -5f), ("hello", -6f), ("▁he", -7f), ("▁hello", -8f),
                     ("or", -9f) })
        { tokens.Add(p); scores.Add(sc); }
        return (tokens.ToArray(), scores.ToArray());
    }

    [Fact]
    public void Gguf_embedded_llama_tokenizer_encodes_decodes_and_drives_generate()
    {
        var vocab = SentencePieceVocabulary();
        var w = TestModels.Random(TestModels.Config(vocab: vocab.Tokens.Length), seed: 9);
        using var dir = new TempDir();
        TestModels.WriteGguf(dir.File("m.gguf"), w, GgufType.F32, vocab);
        var tok = TokenizerLoader.ForModel(dir.File("m.gguf"), vocab.Tokens.Length, 1, 2)!;
        var ids = tok.Encode("hello world");
        Assert.Equal(["▁hello", "▁w", "or", "l", "d"], ids.Select(tok.Piece).ToArray());
        Assert.Equal("hello world", tok.Decode(ids));
        Assert.Equal("ü", tok.Decode(tok.Encode("ü"))); // byte fallback

        var (code, stdout, stderr) = CliRunner.Run("generate", "--model", dir.File("m.gguf"), "--prompt", "hello world", "--max-tokens",
            "4", "--json");
        Assert.True(code == 0, stderr);
        Assert.Equal(4, JsonDocument.Parse(stdout).RootElement.GetProperty("token_ids").GetArrayLength());
    }

    /// <summary>Streaming decode keeps the space before the first generated word (SentencePiece decoders drop the
    /// leading space of what they decode first).</summary>
    [SharedFact]
    public void Streamed_text_keeps_the_space_before_the_first_generated_word()
    {
        var tok = TokenizerLoader.Open(SharedData.Path_("golden", "tokenizers", "mistral-v1.model"));
        var prompt = tok.Encode("Once upon a time", addBos: true);
        var continuation = tok.Encode("Once upon a time there was a cat").Skip(prompt.Count - 1).ToList();
        var streamer = new TextStreamer(tok, prompt);
        var text = string.Concat(continuation.Select(streamer.Add));
        Assert.Equal(" there was a cat", text);
        Assert.Equal(" there was a cat", streamer.Text);
    }

    /// <summary>A GGUF byte-level BPE vocabulary ("gpt2") splits text by its tokenizer.ggml.pre, as llama.cpp maps it:
    /// numbers whole (GPT-2), in threes (Llama 3) or digit by digit (Qwen2), shown by the digit merges each can apply; a
    /// pre-tokenizer this loader does not implement is refused by name rather than split another way.</summary>
    [Theory]
    [InlineData("llama-bpe", true)]
    [InlineData("gpt-2", true)]
    [InlineData(null, true)]
    [InlineData("qwen2", true)]
    [InlineData("smollm", true)]
    [InlineData("deepseek-coder", true)]
    [InlineData("deepseek-llm", true)]
    [InlineData("jais", false)]
    public void A_gguf_bpe_vocabulary_splits_by_its_pre_tokenizer_or_is_refused_by_name(string? pre, bool supported)
    {
        using var dir = new TempDir();
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(TokenizerTests.WriteByteLevelTokenizer(dir)))!;
        var vocab = json["model"]!["vocab"]!.AsObject().OrderBy(p => (int)p.Value!).Select(p => p.Key).ToList();
        // Two digit merges show the split: GPT-2 keeps "1234" whole (12 + 34), Llama 3 cuts numbers into threes (12 + 3, 4).
        var merges = json["model"]!["merges"]!.AsArray().Select(m => (string)m!).Concat(["1 2", "3 4"]).ToArray();
        var tokens = vocab.Concat(["12", "34", "<|begin_of_text|>", "<|end_of_text|>"]).ToArray();
        var metadata = new List<(string, uint, object)>
        {
            ("tokenizer.ggml.model", 8, "gpt2"), ("tokenizer.ggml.tokens", 9, tokens), ("tokenizer.ggml.merges", 9, merges),
        };
        if (pre != null) metadata.Add(("tokenizer.ggml.pre", 8, pre));
        var w = TestModels.Random(TestModels.Config(vocab: tokens.Length), seed: 4);
        TestModels.WriteGguf(dir.File("m.gguf"), w, GgufType.F32, metadata: metadata);
        if (!supported)
        {
            var e = Assert.Throws<InvalidModelException>(() => TokenizerLoader.ForModel(dir.File("m.gguf"), tokens.Length, 1, 2));
            Assert.Equal($"{dir.File("m.gguf")}: tokenizer.ggml.pre '{pre}' is not supported (supported: llama-bpe, llama3 and " +
                "smaug-bpe, whose splitting is Llama 3's; qwen2 and deepseek-r1-qwen, Qwen2's; smollm, starcoder, refact, command-r, " +
                "codeshell, exaone and minerva-7b, SmolLM's; deepseek-coder; deepseek-llm; gpt-2 and default, GPT-2's)", e.Message);
            return;
        }
        var tok = TokenizerLoader.ForModel(dir.File("m.gguf"), tokens.Length, 1, 2)!;
        int Id(string piece) => Array.IndexOf(tokens, piece);
        // Qwen2 isolates every digit, so no digit merge applies.
        int[] expected = pre switch
        {
            "llama-bpe" => [Id("12"), Id("3"), Id("4")],
            "qwen2" or "smollm" or "deepseek-coder" => [Id("1"), Id("2"), Id("3"), Id("4")],
            _ => [Id("12"), Id("34")],
        };
        Assert.Equal(expected, tok.Encode("1234"));
        Assert.Equal([Id("Ġthe"), Id("Ġand")], tok.Encode(" the and"));
    }

    /// <summary>A vocabulary-only GGUF (llama.cpp's --vocab-only: metadata, no tensors) is a tokenizer for
    /// `tokenize --tokenizer`, giving the ids of the whole model's embedded tokenizer; as a model it is refused with an
    /// error that says what it is.</summary>
    [Fact]
    public void A_vocabulary_only_gguf_is_a_tokenizer_and_not_a_model()
    {
        using var dir = new TempDir();
        var tokens = new List<string> { "<unk>", "<s>", "</s>" };
        var scores = new List<float> { 0, 0, 0 };
        for (int b = 0; b < 256; b++) { tokens.Add($"<0x{b:X2}>"); scores.Add(0); }
        foreach (var (p, sc) in new[] { ("▁", -1f), ("h", -2f), ("e", -2f), ("l", -2f), ("o", -2f), ("he", -3f), ("ll", -3f),
            ("hell", -5f), ("hello", -6f), ("▁hello", -8f) })
        { tokens.Add(p); scores.Add(sc); }
        var w = TestModels.Random(TestModels.Config(vocab: tokens.Count), seed: 9);
        TestModels.WriteGguf(dir.File("whole.gguf"), w, GgufType.F32, ([.. tokens], [.. scores]));
        TestModels.WriteGguf(dir.File("vocab.gguf"), w, GgufType.F32, ([.. tokens], [.. scores]), vocabularyOnly: true);
        var whole = CliRunner.Run("tokenize", "--model", dir.File("whole.gguf"), "--text", "hello hello", "--json");
        var vocabOnly = CliRunner.Run("tokenize", "--tokenizer", dir.File("vocab.gguf"), "--text", "hello hello", "--json");
        Assert.True(vocabOnly.ExitCode == 0, vocabOnly.Stderr);
        Assert.Equal(JsonDocument.Parse(whole.Stdout).RootElement.GetProperty("ids").ToString(),
            JsonDocument.Parse(vocabOnly.Stdout).RootElement.GetProperty("ids").ToString());
        var e = Assert.Throws<InvalidModelException>(() => KvIlgpu.Models.Loading.ModelLoader.Load(dir.File("vocab.gguf")));
        Assert.Contains("holds no tensors: a vocabulary-only file", e.Message);
    }
}
