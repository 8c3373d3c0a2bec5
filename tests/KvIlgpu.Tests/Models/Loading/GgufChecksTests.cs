using System.Text;
using KvIlgpu.Models;
using KvIlgpu.Models.Loading;
using KvIlgpu.Tests.Support;

namespace KvIlgpu.Tests.Models.Loading;

/// <summary>GGUF's own rules, each broken on purpose in a file the test writer made: the error names the file and
/// what is wrong.</summary>
public class GgufChecksTests
{
    private static string Write(TempDir dir, Action<byte[]> damage)
    {
        var path = dir.File("m.gguf");
        TestModels.WriteGguf(path, TestModels.Random(TestModels.Config(vocab: 40, seq: 16), seed: 3), GgufType.F32);
        var bytes = File.ReadAllBytes(path);
        damage(bytes);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static int Find(byte[] bytes, string text)
    {
        var pattern = Encoding.ASCII.GetBytes(text);
        for (int i = 0; i + pattern.Length <= bytes.Length; i++)
            if (bytes.AsSpan(i, pattern.Length).SequenceEqual(pattern)) return i;
        throw new InvalidOperationException($"{text} is not in the file");
    }

    private static string Error(string path) => Assert.Throws<InvalidModelException>(() => ModelLoader.Load(path)).Message;

    [Fact]
    public void A_damaged_tensor_name_is_an_error_not_a_tied_embedding()
    {
        using var dir = new TempDir();
        // The output head's own name (its u64 length 13 first), not the "output.weight" inside blk.N.attn_output.weight.
        var path = Write(dir, b => Encoding.ASCII.GetBytes("outpux.weight").CopyTo(b, Find(b, "\u000d\0\0\0\0\0\0\0output.weight") + 8));
        Assert.Equal($"{path}: tensor outpux.weight is not a tensor of a 2-layer llama model", Error(path));
    }

    [Fact]
    public void The_alignment_must_be_a_power_of_two()
    {
        using var dir = new TempDir();
        // general.alignment is a uint32 right after its key and its type (4).
        var path = Write(dir, b => BitConverter.GetBytes(48u).CopyTo(b, Find(b, "general.alignment") + "general.alignment".Length + 4));
        Assert.Equal($"{path}: general.alignment must be a uint32 power of two, got 48 (UInt32)", Error(path));
    }

    [Fact]
    public void Tensors_may_not_overlap_or_sit_off_the_alignment()
    {
        using var dir = new TempDir();
        // The second tensor's info: name, n_dims, dims, type, then its offset; move it onto the first tensor's bytes.
        int OffsetField(byte[] b, string name)
        {
            int at = Find(b, name) + name.Length;
            uint nd = BitConverter.ToUInt32(b, at);
            return at + 4 + (int)nd * 8 + 4;
        }
        var overlapping = Write(dir, b => BitConverter.GetBytes(0UL).CopyTo(b, OffsetField(b, "blk.0.attn_norm.weight")));
        Assert.Contains("overlap in the data section", Error(overlapping));
        var misaligned = Write(dir, b => BitConverter.GetBytes(BitConverter.ToUInt64(b, OffsetField(b, "blk.0.attn_norm.weight")) + 4)
            .CopyTo(b, OffsetField(b, "blk.0.attn_norm.weight")));
        Assert.Contains("is not a multiple of the alignment 32", Error(misaligned));
    }
}
