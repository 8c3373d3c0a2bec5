using System.Text;
using System.Text.Json.Nodes;
using KvIlgpu.Models;
using KvIlgpu.Tests.Support;
using KvIlgpu.Tokenization;

namespace KvIlgpu.Tests.Tokenization;

/// <summary>The loader fuzzer's rule for tokenizer files (tokenizer.json and llama2.c's tokenizer.bin): each corrupted
/// file either opens, and then encodes and decodes text into ids inside its vocabulary, or throws
/// <see cref="InvalidModelException"/> naming the file; never another exception type.</summary>
public class TokenizerFuzzTests
{
    private const int Cases = 300;

    [Theory]
    [InlineData("tokenizer.json")]
    [InlineData("tokenizer.bin")]
    public void Every_corrupted_tokenizer_opens_cleanly_or_fails_with_the_loader_error(string kind)
    {
        using var dir = new TempDir();
        int vocab = 1 << 20;
        string path = kind == "tokenizer.json" ? TokenizerTests.WriteByteLevelTokenizer(dir) : TokenizerTests.WriteLlama2cTokenizer(dir,
            out vocab);
        var original = File.ReadAllBytes(path);
        var rng = new Random(kind.Length * 31);
        var failures = new List<string>();
        for (int i = 0; i < Cases && failures.Count < 5; i++)
        {
            int seed = rng.Next();
            var r = new Random(seed);
            var (bytes, what) = kind == "tokenizer.json" && r.Next(2) == 0 ? MutateJson(original, r) : MutateBytes(original, r);
            File.WriteAllBytes(path, bytes);
            string? failure = Check(path, kind == "tokenizer.bin" ? vocab : null);
            if (failure != null) failures.Add($"case {i} (seed {seed}, {what}): {failure}");
        }
        File.WriteAllBytes(path, original);
        Assert.True(failures.Count == 0, $"{kind}:\n{string.Join("\n", failures)}");
        Assert.Null(Check(path, kind == "tokenizer.bin" ? vocab : null));
    }

    /// <summary>A real SentencePiece tokenizer.model (Mistral's, from ../shared), its protobuf corrupted: byte flips,
    /// truncation, and varint length and field bytes set to extremes.</summary>
    [SharedFact]
    public void Every_corrupted_sentencepiece_model_opens_cleanly_or_fails_with_the_loader_error()
    {
        using var dir = new TempDir();
        string path = dir.File("tokenizer.model");
        var original = File.ReadAllBytes(SharedData.Path_("golden", "tokenizers", "mistral-v1.model"));
        var rng = new Random(17);
        var failures = new List<string>();
        for (int i = 0; i < 150 && failures.Count < 5; i++)
        {
            int seed = rng.Next();
            var r = new Random(seed);
            var (bytes, what) = r.Next(3) switch
            {
                0 => Mutations.BitFlips(original, r),
                1 => Mutations.Truncation(original, r),
                _ => ProtobufBytes(original, r),
            };
            File.WriteAllBytes(path, bytes);
            if (Check(path, 32000) is { } failure) failures.Add($"case {i} (seed {seed}, {what}): {failure}");
        }
        Assert.True(failures.Count == 0, $"tokenizer.model:\n{string.Join("\n", failures)}");
    }

    /// <summary>A few bytes anywhere set to what breaks protobuf readers: 0xFF (a varint that never ends), 0x00, or a
    /// length-delimited field tag (wire type 2) followed by a huge length.</summary>
    private static (byte[], string) ProtobufBytes(byte[] original, Random rng)
    {
        var bytes = (byte[])original.Clone();
        int at = rng.Next(bytes.Length - 6);
        switch (rng.Next(3))
        {
            case 0: bytes.AsSpan(at, 5).Fill(0xFF); return (bytes, $"five 0xFF bytes at {at}");
            case 1: bytes.AsSpan(at, 5).Clear(); return (bytes, $"five zero bytes at {at}");
            default:
                bytes[at] = 0x0A; // field 1, length-delimited
                bytes[at + 1] = 0xFF; bytes[at + 2] = 0xFF; bytes[at + 3] = 0xFF; bytes[at + 4] = 0x7F;
                return (bytes, $"a field of length 2^28 at {at}");
        }
    }

    private static string? Check(string path, int? vocab)
    {
        ITextTokenizer tok;
        try { tok = TokenizerLoader.Open(path, vocab); }
        catch (InvalidModelException e)
        {
            return e.Message.Contains(path, StringComparison.Ordinal) ? null
            : $"the error does not name {path}";
        }
        catch (Exception e) { return $"{e.GetType().Name}: {e.Message}"; }
        try
        {
            var ids = tok.Encode("the cat sat on the mat, naïve café 123", addBos: tok.BosId != null);
            if (ids.Any(id => (uint)id >= (uint)tok.VocabularySize)) return "opened, but encodes ids outside its vocabulary";
            tok.Decode(ids);
            return null;
        }
        catch (Exception e) { return $"opened, but encoding threw {e.GetType().Name}: {e.Message}"; }
    }

    private static (byte[], string) MutateBytes(byte[] original, Random rng) => rng.Next(3) switch
    {
        0 => Mutations.BitFlips(original, rng),
        1 => Mutations.Truncation(original, rng),
        _ => Mutations.Int32Field(original, rng, [0, -1, int.MaxValue, int.MinValue, 1 << 24], headerOnly: false),
    };

    private static (byte[], string) MutateJson(byte[] original, Random rng)
    {
        var root = JsonNode.Parse(original)!;
        // Walk to a random node and replace it with a value of another type.
        JsonNode node = root;
        string where = "$";
        for (int depth = 0; depth < rng.Next(1, 5); depth++)
        {
            if (node is JsonObject o && o.Count > 0)
            {
                var key = o.Select(p => p.Key).ElementAt(rng.Next(o.Count));
                if (o[key] is not JsonNode child) break;
                node = child; where += "." + key;
            }
            else if (node is JsonArray a && a.Count > 0)
            {
                int i = rng.Next(a.Count);
                if (a[i] is not JsonNode child) break;
                node = child; where += $"[{i}]";
            }
            else break;
        }
        JsonNode?[] values = [JsonValue.Create("zz"), JsonValue.Create(-1), JsonValue.Create(1 << 30), null, new JsonArray(),
            new JsonObject(),
            JsonValue.Create(true)];
        var value = values[rng.Next(values.Length)];
        if (node.Parent is JsonObject parent) parent[node.GetPropertyName()] = value;
        else if (node.Parent is JsonArray list) list[node.GetElementIndex()] = value;
        else return (Encoding.UTF8.GetBytes("[]"), "the root replaced by []");
        return (Encoding.UTF8.GetBytes(root.ToJsonString()), $"{where} set to {value?.ToJsonString() ?? "null"}");
    }
}
