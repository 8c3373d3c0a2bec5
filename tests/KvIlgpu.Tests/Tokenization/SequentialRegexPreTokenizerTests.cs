using KvIlgpu.Tokenization;

namespace KvIlgpu.Tests.Tokenization;

/// <summary>Pre-tokenizers that apply several regexes in sequence, against pieces worked out by hand from llama.cpp's
/// rule (each regex splits every piece so far into its matches and the gaps between them).</summary>
public class SequentialRegexPreTokenizerTests
{
    private static string[] Pieces(string[] patterns, string text, IReadOnlyDictionary<string, int>? special = null) =>
        [.. new SequentialRegexPreTokenizer(patterns, special).Split(text).Select(p => text.Substring(p.Offset, p.Length))];

    [Theory]
    // Digits first, then GPT-2's regex inside each piece: the spaces before a number stay a piece of their own, which a
    // single GPT-2 regex would have joined to the number (" 123").
    [InlineData("abc  123 def", new[] { "abc", "  ", "1", "2", "3", " def" })]
    [InlineData("It's 42!", new[] { "It", "'s", " ", "4", "2", "!" })]
    [InlineData("x1y", new[] { "x", "1", "y" })]
    [InlineData("  ", new[] { "  " })]
    public void SmolLm_splits_digits_first_then_by_gpt2s_pattern(string text, string[] expected) =>
        Assert.Equal(expected, Pieces(ByteLevelBpeTextTokenizer.SmolLmPatterns, text));

    [Theory]
    [InlineData("Hello, world\n12", new[] { "Hello", ",", " world", "\n", "1", "2" })]
    [InlineData("a = b;", new[] { "a", " =", " b", ";" })] // "=" is a symbol, not punctuation: the gap " =" stays whole
    [InlineData("中文 ok", new[] { "中文", " ok" })]
    public void DeepSeek_coder_splits_lines_letters_punctuation_cjk_and_digits_in_turn(string text, string[] expected) =>
        Assert.Equal(expected, Pieces(ByteLevelBpeTextTokenizer.DeepSeekCoderPatterns, text));

    [Theory]
    [InlineData("Hello, world!\n123 \u4e2d\u6587", new[] { "Hello", ",", " world", "!", "\n", "123", " ", "\u4e2d\u6587" })]
    [InlineData("a  b", new[] { "a", " ", " b" })] // one space joins the letters; the other stays a gap
    [InlineData("x = [1];", new[] { "x", " =", " [", "1", "];" })] // ASCII symbols are in its punctuation class
    // Digit runs stay whole. The punctuation class's ASCII range :-~ holds the ASCII letters too, and (as in llama.cpp and
    // Hugging Face's Sequence) every regex splits every piece so far: the word matched by the letter regex is cut again
    // around its ASCII letters.
    [InlineData("\u00e9t\u00e9 2024", new[] { "\u00e9", "t", "\u00e9", " ", "2024" })]
    // Letters past the 16-bit range (Deseret, Adlam) are letters: each word with its leading space is a piece of its own.
    [InlineData("\uD801\uDC00\uD801\uDC01 \uD801\uDC02 \uD83A\uDD00", new[] { "\uD801\uDC00\uD801\uDC01", " \uD801\uDC02",
        " \uD83A\uDD00" })]
    [InlineData("ab  ", new[] { "ab", "  " })]
    public void DeepSeek_llm_splits_lines_letters_punctuation_trailing_space_cjk_and_numbers_in_turn(string text, string[] expected) =>
        Assert.Equal(expected, Pieces(ByteLevelBpeTextTokenizer.DeepSeekLlmPatterns, text));

    [Fact]
    public void Special_tokens_are_cut_out_before_any_regex_and_the_pieces_cover_the_text()
    {
        var special = new Dictionary<string, int> { ["<|endoftext|>"] = 0 };
        var text = "a1<|endoftext|>22 b";
        var pieces = Pieces(ByteLevelBpeTextTokenizer.SmolLmPatterns, text, special);
        Assert.Equal(["a", "1", "<|endoftext|>", "2", "2", " b"], pieces);
        Assert.Equal(text, string.Concat(pieces));
    }
}

/// <summary>A Hugging Face tokenizer.json whose pre_tokenizer is a Sequence (SmolLM's: Digits with individual digits,
/// then ByteLevel with its regex) splits by every member in turn, not by the first Split alone.</summary>
public class SequencePreTokenizerJsonTests
{
    [Fact]
    public void A_digits_then_byte_level_sequence_isolates_every_digit()
    {
        using var dir = new Support.TempDir();
        var path = TokenizerTests.WriteByteLevelTokenizer(dir);
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(path))!;
        var vocab = json["model"]!["vocab"]!.AsObject();
        vocab["12"] = vocab.Count + 2; // after the two added tokens
        json["model"]!["merges"]!.AsArray().Add("1 2");
        json["pre_tokenizer"] = System.Text.Json.Nodes.JsonNode.Parse(
            """{"type":"Sequence","pretokenizers":[{"type":"Digits","individual_digits":true},""" +
            """{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}]}""");
        File.WriteAllText(path, json.ToJsonString());
        var tok = TokenizerLoader.Open(path);
        Assert.Equal(["1", "2", "Ġthe"], tok.Encode("12 the").Select(tok.Piece).ToArray());
        // Without the Digits step the merge applies.
        json["pre_tokenizer"] = System.Text.Json.Nodes.JsonNode.Parse("""{"type":"ByteLevel","use_regex":true}""");
        File.WriteAllText(path, json.ToJsonString());
        var whole = TokenizerLoader.Open(path);
        Assert.Equal(["12", "Ġthe"], whole.Encode("12 the").Select(whole.Piece).ToArray());
    }
}
