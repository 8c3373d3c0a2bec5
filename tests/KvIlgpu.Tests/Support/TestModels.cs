using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using KvIlgpu.Models;
using KvIlgpu.Models.Saving;

namespace KvIlgpu.Tests.Support;

/// <summary>Random models and writers for the formats the engine reads. The writers follow each format's
/// specification (llama2.c export, HF safetensors + config.json with HF's q/k permutation, GGUF v3).</summary>
internal static class TestModels
{
    private static readonly string[] Architectures = ["LlamaForCausalLM"];

    public static ModelConfig Config(int dim = 48, int hidden = 80, int layers = 2, int heads = 4, int kvHeads = 2, int vocab = 64,
        int seq = 64) =>
        new ModelConfig
        {
            Architecture = "llama2c", Dim = dim, HiddenDim = hidden, Layers = layers, Heads = heads, KvHeads = kvHeads,
            VocabSize = vocab, MaxSeqLen = seq, BosTokenId = 1, EosTokenIds = [2]
        }.Validated("test");

    public static LlamaWeights Random(ModelConfig c, int seed, bool tied = false)
    {
        var rng = new Random(seed);
        WeightTensor T(string name, int rows, int cols, float scale) =>
            WeightTensor.FromF32(name, rows, cols, Enumerable.Range(0, rows * cols).Select(_ =>
                (float)(rng.NextDouble() * 2 - 1) * scale).ToArray());
        WeightTensor Norm(string name) => WeightTensor.FromF32(name, 1, c.Dim, Enumerable.Range(0, c.Dim).Select(_ => 0.8f
            + (float)rng.NextDouble() * 0.4f).ToArray());
        float s = 1f / MathF.Sqrt(c.Dim);
        var emb = T("emb", c.VocabSize, c.Dim, 1f);
        var layers = Enumerable.Range(0, c.Layers).Select(l => new LayerWeights(
            Norm($"an{l}"), T($"wq{l}", c.QDim, c.Dim, s), T($"wk{l}", c.KvDim, c.Dim, s), T($"wv{l}", c.KvDim, c.Dim, s), T($"wo{l}",
                c.Dim, c.QDim, s),
            null, null, null, Norm($"fn{l}"), T($"w1{l}", c.HiddenDim, c.Dim, s), T($"w2{l}", c.Dim, c.HiddenDim,
                1f / MathF.Sqrt(c.HiddenDim)), T($"w3{l}", c.HiddenDim, c.Dim, s))).ToList();
        var cfg = c with { TiedEmbeddings = tied };
        return new LlamaWeights(cfg, emb, layers, Norm("final"), tied ? emb : T("cls", c.VocabSize, c.Dim, s), "random");
    }

    private static void WriteFloats(Stream s, WeightTensor t) => s.Write(MemoryMarshal.AsBytes(t.ToFloat().AsSpan()));

    /// <summary>llama2.c legacy export: 7-int header (negative vocab = separate classifier), tensors grouped by kind.</summary>
    public static void WriteLlama2c(string path, LlamaWeights w)
    {
        var c = w.Config;
        using var f = File.Create(path);
        foreach (var v in new[] { c.Dim, c.HiddenDim, c.Layers, c.Heads, c.KvHeads, c.TiedEmbeddings ? c.VocabSize : -c.VocabSize,
            c.MaxSeqLen })
            f.Write(BitConverter.GetBytes(v));
        WriteFloats(f, w.TokenEmbedding);
        foreach (var l in w.Layers) WriteFloats(f, l.AttentionNorm);
        foreach (var l in w.Layers) WriteFloats(f, l.Wq);
        foreach (var l in w.Layers) WriteFloats(f, l.Wk);
        foreach (var l in w.Layers) WriteFloats(f, l.Wv);
        foreach (var l in w.Layers) WriteFloats(f, l.Wo);
        foreach (var l in w.Layers) WriteFloats(f, l.FfnNorm);
        foreach (var l in w.Layers) WriteFloats(f, l.WGate);
        foreach (var l in w.Layers) WriteFloats(f, l.WDown);
        foreach (var l in w.Layers) WriteFloats(f, l.WUp);
        WriteFloats(f, w.FinalNorm);
        f.Write(new byte[c.MaxSeqLen * c.HeadDim * 4]); // legacy freq_cis tables (unused)
        if (!c.TiedEmbeddings) WriteFloats(f, w.Output);
    }

    /// <summary>HF's convert_llama_weights_to_hf permute: within each head, rows (2i, 2i+1) move to (i, i + d/2).</summary>
    public static WeightTensor PermuteForHf(WeightTensor t, int heads)
    {
        var src = t.ToFloat();
        int d = t.Rows / heads, cols = t.Cols;
        var dst = new float[src.Length];
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < d / 2; i++)
                for (int j = 0; j < 2; j++)
                    Array.Copy(src, (h * d + 2 * i + j) * cols, dst, (h * d + j * d / 2 + i) * cols, cols);
        return WeightTensor.FromF32(t.Name, t.Rows, t.Cols, dst);
    }

    public static void WriteHuggingFace(string dir, LlamaWeights w, WeightType type, bool sharded = false)
    {
        var c = w.Config;
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "config.json"), JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["architectures"] = Architectures, ["model_type"] = "llama",
            ["hidden_size"] = c.Dim, ["intermediate_size"] = c.HiddenDim, ["num_hidden_layers"] = c.Layers,
            ["num_attention_heads"] = c.Heads, ["num_key_value_heads"] = c.KvHeads, ["vocab_size"] = c.VocabSize,
            ["max_position_embeddings"] = c.MaxSeqLen, ["rms_norm_eps"] = c.RmsNormEps, ["rope_theta"] = c.RopeTheta,
            ["tie_word_embeddings"] = c.TiedEmbeddings, ["bos_token_id"] = 1, ["eos_token_id"] = 2,
            ["torch_dtype"] = type == WeightType.F32 ? "float32" : "bfloat16",
        }));
        var tensors = new List<(string, WeightTensor, long[])>();
        void Add(string name, WeightTensor t, bool vector = false) =>
            tensors.Add((name, vector ? t : t.ConvertTo(type), vector ? [t.Cols] : [t.Rows, t.Cols]));
        Add("model.embed_tokens.weight", w.TokenEmbedding);
        for (int l = 0; l < c.Layers; l++)
        {
            var L = w.Layers[l];
            string p = $"model.layers.{l}.";
            Add(p + "input_layernorm.weight", L.AttentionNorm, true);
            Add(p + "self_attn.q_proj.weight", PermuteForHf(L.Wq, c.Heads));
            Add(p + "self_attn.k_proj.weight", PermuteForHf(L.Wk, c.KvHeads));
            Add(p + "self_attn.v_proj.weight", L.Wv);
            Add(p + "self_attn.o_proj.weight", L.Wo);
            Add(p + "post_attention_layernorm.weight", L.FfnNorm, true);
            Add(p + "mlp.gate_proj.weight", L.WGate);
            Add(p + "mlp.down_proj.weight", L.WDown);
            Add(p + "mlp.up_proj.weight", L.WUp);
        }
        Add("model.norm.weight", w.FinalNorm, true);
        if (!c.TiedEmbeddings) Add("lm_head.weight", w.Output);
        if (!sharded) { SafetensorsWriter.Write(Path.Combine(dir, "model.safetensors"), tensors); return; }
        int half = tensors.Count / 2;
        var shards = new[] { tensors.Take(half).ToList(), tensors.Skip(half).ToList() };
        var map = new Dictionary<string, string>();
        for (int s = 0; s < 2; s++)
        {
            string file = $"model-0000{s + 1}-of-00002.safetensors";
            SafetensorsWriter.Write(Path.Combine(dir, file), shards[s]);
            foreach (var (name, _, _) in shards[s]) map[name] = file;
        }
        File.WriteAllText(Path.Combine(dir, "model.safetensors.index.json"), JsonSerializer.Serialize(new
        {
            metadata = new { },
            weight_map = map
        }));
    }


    /// <summary>A small model whose widths are whole 256-value super-blocks, so every k-quant holds it (the quantised-file
    /// tests' model).</summary>
    public static LlamaWeights SuperBlockModel(int seed) =>
        Random(Config(dim: 256, hidden: 512, heads: 4, kvHeads: 2, vocab: 64), seed);

    /// <summary>What llama-quantize's Q4_K_M writes for a small model, by GGUF tensor name: q6_K for attn_v, ffn_down and
    /// the output head, q5_K for ffn_up (standing in for its q5_K/q4_K alternation), q4_K for the rest.</summary>
    public static GgufType Q4KMType(string name) => name.Contains("attn_v") || name.Contains("ffn_down") || name == "output.weight"
        ? GgufType.Q6_K : name.Contains("ffn_up") ? GgufType.Q5_K : GgufType.Q4_K;

    /// <summary>GGUF v3 with llama metadata; matrices in the requested ggml type, norms f32; dims as ggml ne[] (cols first).</summary>
    public static void WriteGguf(string path, LlamaWeights w, GgufType matrixType, (string[] Tokens, float[] Scores)? tokenizer = null,
        IReadOnlyList<(string Key, uint Type, object Value)>? metadata = null, bool vocabularyOnly = false) =>
        WriteGguf(path, w, _ => matrixType, tokenizer, metadata, vocabularyOnly);

    /// <summary>GGUF v3 with each matrix in the type typeOf(its GGUF name) gives, as llama-quantize mixes them.</summary>
    public static void WriteGguf(string path, LlamaWeights w, Func<string, GgufType> typeOf,
        (string[] Tokens, float[] Scores)? tokenizer = null, IReadOnlyList<(string Key, uint Type, object Value)>? metadata = null,
        bool vocabularyOnly = false)
    {
        var c = w.Config;
        using var f = File.Create(path);
        var bw = new BinaryWriter(f);
        void Str(string s) { var b = Encoding.UTF8.GetBytes(s); bw.Write((ulong)b.Length); bw.Write(b); }
        var kv = new List<(string, uint, object)>
        {
            ("general.architecture", 8, "llama"), ("general.alignment", 4, 32u),
            ("llama.embedding_length", 4, (uint)c.Dim), ("llama.feed_forward_length", 4, (uint)c.HiddenDim),
            ("llama.block_count", 4, (uint)c.Layers), ("llama.attention.head_count", 4, (uint)c.Heads),
            ("llama.attention.head_count_kv", 4, (uint)c.KvHeads), ("llama.context_length", 4, (uint)c.MaxSeqLen),
            ("llama.attention.layer_norm_rms_epsilon", 6, c.RmsNormEps), ("llama.rope.freq_base", 6, c.RopeTheta),
            ("llama.rope.dimension_count", 4, (uint)c.HeadDim), ("tokenizer.ggml.bos_token_id", 4, 1u), ("tokenizer.ggml.eos_token_id", 4,
                2u),
        };
        if (tokenizer is { } tk)
        {
            kv.Add(("tokenizer.ggml.model", 8, "llama"));
            kv.Add(("tokenizer.ggml.tokens", 9, tk.Tokens));
            kv.Add(("tokenizer.ggml.scores", 9, tk.Scores));
        }
        kv.AddRange(metadata ?? []);
        var tensors = new List<(string Name, WeightTensor T, bool Vector)> { ("token_embd.weight", w.TokenEmbedding, false) };
        for (int l = 0; l < c.Layers; l++)
        {
            var L = w.Layers[l];
            tensors.AddRange([($"blk.{l}.attn_norm.weight", L.AttentionNorm, true), ($"blk.{l}.attn_q.weight", L.Wq, false),
                ($"blk.{l}.attn_k.weight", L.Wk, false), ($"blk.{l}.attn_v.weight", L.Wv, false), ($"blk.{l}.attn_output.weight", L.Wo,
                    false),
                ($"blk.{l}.ffn_norm.weight", L.FfnNorm, true), ($"blk.{l}.ffn_gate.weight", L.WGate, false),
                ($"blk.{l}.ffn_down.weight", L.WDown, false), ($"blk.{l}.ffn_up.weight", L.WUp, false)]);
        }
        tensors.Add(("output_norm.weight", w.FinalNorm, true));
        if (!c.TiedEmbeddings) tensors.Add(("output.weight", w.Output, false));

        byte[] Encode(WeightTensor t, GgufType type)
        {
            var v = t.ToFloat();
            switch (type)
            {
                case GgufType.F32: return MemoryMarshal.AsBytes(v.AsSpan()).ToArray();
                case GgufType.F16: return v.SelectMany(x => BitConverter.GetBytes(BitConverter.HalfToUInt16Bits((Half)x))).ToArray();
                default: return GgmlQuantizer.Quantize(type, v);
            }
        }
        // llama.cpp's --vocab-only writes the metadata and no tensors.
        var blobs = tensors.Where(_ => !vocabularyOnly).Select(t => (t.Name, t.T, Type: t.Vector ? GgufType.F32 : typeOf(t.Name)))
            .Select(t => (t.Name, t.T, t.Type, Data: Encode(t.T, t.Type))).ToList();

        bw.Write(0x46554747u); bw.Write(3u); bw.Write((ulong)blobs.Count); bw.Write((ulong)kv.Count);
        foreach (var (key, type, value) in kv)
        {
            Str(key); bw.Write(type);
            switch (value)
            {
                case string s: Str(s); break;
                case uint u: bw.Write(u); break;
                case float fl: bw.Write(fl); break;
                case string[] arr: bw.Write(8u); bw.Write((ulong)arr.Length); foreach (var a in arr) Str(a); break;
                case float[] arr: bw.Write(6u); bw.Write((ulong)arr.Length); foreach (var a in arr) bw.Write(a); break;
            }
        }
        ulong offset = 0;
        foreach (var b in blobs)
        {
            Str(b.Name);
            bool vec = b.T.Rows == 1;
            bw.Write(vec ? 1u : 2u);
            bw.Write((ulong)b.T.Cols);
            if (!vec) bw.Write((ulong)b.T.Rows);
            bw.Write((uint)b.Type);
            bw.Write(offset);
            offset += (ulong)((b.Data.Length + 31) / 32 * 32);
        }
        bw.Flush();
        while (f.Position % 32 != 0) f.WriteByte(0);
        foreach (var b in blobs)
        {
            f.Write(b.Data);
            while (f.Position % 32 != 0) f.WriteByte(0);
        }
    }
}

/// <summary>The GGUF tensor types the test writer emits (ggml type ids).</summary>
public enum GgufType { F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q4_K = 12, Q5_K = 13, Q6_K = 14 }
