using System.Text;
using KvIlgpu.Models.Quantization;

namespace KvIlgpu.Models.Saving;

/// <summary>Writes a Llama-family model as a GGUF v3 file of llama.cpp's `llama` architecture: the metadata keys and
/// tensor names llama.cpp's converter writes, norms in f32, every matrix in its own type (f32, f16, bf16, or the ggml
/// blocks it was loaded with), 32-byte alignment. Q and K rows are written in the interleaved-pair RoPE order llama.cpp
/// uses (rows of a half-split model, as Hugging Face stores them, are permuted back). The tokenizer is not embedded:
/// `tokenizer.ggml.model` is "no_vocab" with the vocabulary size, which llama.cpp loads (llama-bench needs nothing
/// more), and KvIlgpu takes the tokenizer from --tokenizer.</summary>
public static class GgufWriter
{
    private const uint Alignment = 32;

    /// <summary>Writes w to path, matrices converted to matrixType when it is given (f32, f16 or bf16; quantised
    /// matrices are written as they are, or dequantised when matrixType is given).</summary>
    public static void Write(string path, LlamaWeights w, WeightType? matrixType = null)
    {
        var c = w.Config;
        if (c.AttentionBias)
            throw new ArgumentException($"{w.Source}: the model has attention biases, which llama.cpp's llama architecture has no " +
                "tensors for");
        if (matrixType is { } m && m.IsQuantized())
            throw new ArgumentException($"converting to {QuantFormats.GgmlName(m)} is llama-quantize's job: write f16 or f32 and " +
                "quantise that");
        var meta = new List<(string Key, object Value)>
        {
            ("general.architecture", "llama"), ("general.name", Path.GetFileNameWithoutExtension(w.Source.TrimEnd('/'))),
            ("general.alignment", Alignment),
            ("llama.context_length", (uint)c.MaxSeqLen), ("llama.embedding_length", (uint)c.Dim),
            ("llama.feed_forward_length", (uint)c.HiddenDim), ("llama.block_count", (uint)c.Layers),
            ("llama.attention.head_count", (uint)c.Heads), ("llama.attention.head_count_kv", (uint)c.KvHeads),
            ("llama.rope.dimension_count", (uint)c.HeadDim), ("llama.rope.freq_base", c.RopeTheta),
            ("llama.attention.layer_norm_rms_epsilon", c.RmsNormEps), ("llama.vocab_size", (uint)c.VocabSize),
            ("tokenizer.ggml.model", "no_vocab"),
        };
        if (c.RopeScaling is { } rs)
        {
            if (rs.Type != "linear")
                throw new ArgumentException($"{w.Source}: rope scaling '{rs.Type}' has no GGUF keys this writer knows (linear has)");
            meta.Add(("llama.rope.scaling.type", "linear"));
            meta.Add(("llama.rope.scaling.factor", rs.Factor));
        }
        if (c.BosTokenId is int bos) meta.Add(("tokenizer.ggml.bos_token_id", (uint)bos));
        if (c.EosTokenIds.Count > 0) meta.Add(("tokenizer.ggml.eos_token_id", (uint)c.EosTokenIds[0]));

        WeightTensor Matrix(WeightTensor t) => matrixType is { } type ? (t.Type.IsQuantized() ? t.ConvertTo(WeightType.F32) : t)
            .ConvertTo(type) : t;
        WeightTensor Interleaved(WeightTensor t, int heads) =>
            c.RopeLayout == RopeLayout.HalfSplit ? RopeRowOrder.ToInterleaved(t, heads) : t;
        var tensors = new List<(string Name, WeightTensor T)> { ("token_embd.weight", Matrix(w.TokenEmbedding)) };
        for (int l = 0; l < c.Layers; l++)
        {
            var layer = w.Layers[l];
            string p = $"blk.{l}.";
            tensors.AddRange([(p + "attn_norm.weight", layer.AttentionNorm.ConvertTo(WeightType.F32)),
                (p + "attn_q.weight", Matrix(Interleaved(layer.Wq, c.Heads))),
                (p + "attn_k.weight", Matrix(Interleaved(layer.Wk, c.KvHeads))),
                (p + "attn_v.weight", Matrix(layer.Wv)), (p + "attn_output.weight", Matrix(layer.Wo)),
                (p + "ffn_norm.weight", layer.FfnNorm.ConvertTo(WeightType.F32)), (p + "ffn_gate.weight", Matrix(layer.WGate)),
                (p + "ffn_down.weight", Matrix(layer.WDown)), (p + "ffn_up.weight", Matrix(layer.WUp))]);
        }
        tensors.Add(("output_norm.weight", w.FinalNorm.ConvertTo(WeightType.F32)));
        if (!c.TiedEmbeddings) tensors.Add(("output.weight", Matrix(w.Output)));

        using var f = new FileStream(path, FileMode.Create, FileAccess.Write);
        var bw = new BinaryWriter(f);
        bw.Write(0x46554747u); bw.Write(3u); bw.Write((ulong)tensors.Count); bw.Write((ulong)meta.Count);
        foreach (var (key, value) in meta)
        {
            WriteString(bw, key);
            switch (value)
            {
                case string s: bw.Write(8u); WriteString(bw, s); break;
                case uint u: bw.Write(4u); bw.Write(u); break;
                case float v: bw.Write(6u); bw.Write(v); break;
                default: throw new InvalidOperationException(key);
            }
        }
        ulong offset = 0;
        foreach (var (name, t) in tensors)
        {
            WriteString(bw, name);
            bool vector = t.Rows == 1;
            bw.Write(vector ? 1u : 2u);
            bw.Write((ulong)t.Cols);
            if (!vector) bw.Write((ulong)t.Rows);
            bw.Write(GgmlTypeId(t.Type));
            bw.Write(offset);
            offset += Aligned((ulong)t.ByteSize);
        }
        bw.Flush();
        Pad(f);
        foreach (var (_, t) in tensors)
        {
            if (t.Blocks != null) f.Write(t.Blocks);
            else if (t.F32 != null) f.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(t.F32.AsSpan()));
            else f.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(t.Bits16.AsSpan()));
            Pad(f);
        }
    }

    private static ulong Aligned(ulong n) => (n + Alignment - 1) / Alignment * Alignment;

    private static void Pad(Stream f)
    {
        while (f.Position % Alignment != 0) f.WriteByte(0);
    }

    private static void WriteString(BinaryWriter bw, string s)
    {
        var b = Encoding.UTF8.GetBytes(s);
        bw.Write((ulong)b.Length);
        bw.Write(b);
    }

    private static uint GgmlTypeId(WeightType t) => t switch
    {
        WeightType.F32 => 0,
        WeightType.F16 => 1,
        WeightType.BF16 => 30,
        WeightType.Q8_0 => 8,
        WeightType.Q4_0 => 2,
        WeightType.Q4_1 => 3,
        WeightType.Q5_0 => 6,
        WeightType.Q5_1 => 7,
        WeightType.Q4_K => 12,
        WeightType.Q5_K => 13,
        WeightType.Q6_K => 14,
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };
}
