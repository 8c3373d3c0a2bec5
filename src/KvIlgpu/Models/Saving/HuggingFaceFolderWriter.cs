using System.Text.Json;
using KvIlgpu.Models.Quantization;

namespace KvIlgpu.Models.Saving;

/// <summary>Writes a model as a Hugging Face folder (config.json and model.safetensors, in Hugging Face's tensor names
/// and its half-split order of Q and K rows; a model with q/k/v biases as Qwen2), which every loader of this project,
/// and HF transformers, reads back.</summary>
public static class HuggingFaceFolderWriter
{
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <summary>Writes w into dir. Matrices (the embedding included) are converted to matrixType when it is given (f32,
    /// f16 or bf16), else kept as they are; norm vectors and biases are written as f32. A model whose RoPE pairs are
    /// interleaved (llama2.c, GGUF) has its Q and K rows permuted to half-split order, as Hugging Face's converter does.</summary>
    public static void Write(string dir, LlamaWeights w, WeightType? matrixType = null)
    {
        var c = w.Config;
        if (matrixType is { } m && m.IsQuantized())
            throw new ArgumentException($"a Hugging Face folder holds f32, f16 or bf16 tensors, not {m}");
        WeightTensor Matrix(WeightTensor t)
        {
            var type = matrixType ?? t.Type;
            if (type.IsQuantized())
                throw new ArgumentException($"{w.Source}: tensor {t.Name} is {QuantFormats.GgmlName(type)}, which " +
                    "safetensors cannot hold: give a matrix type (f32, f16 or bf16)");
            return t.ConvertTo(type);
        }
        WeightTensor HalfSplit(WeightTensor t, int heads) => c.RopeLayout == RopeLayout.HalfSplit ? t : RopeRowOrder.ToHalfSplit(t, heads);

        var tensors = new List<(string, WeightTensor, long[])>();
        void Add(string name, WeightTensor t) => tensors.Add((name, t, t.Rows == 1 ? [t.Cols] : [t.Rows, t.Cols]));
        void Vector(string name, WeightTensor? t) { if (t != null) Add(name, t.ConvertTo(WeightType.F32)); }
        Add("model.embed_tokens.weight", Matrix(w.TokenEmbedding));
        for (int l = 0; l < c.Layers; l++)
        {
            var layer = w.Layers[l];
            string p = $"model.layers.{l}.";
            Vector(p + "input_layernorm.weight", layer.AttentionNorm);
            Add(p + "self_attn.q_proj.weight", Matrix(HalfSplit(layer.Wq, c.Heads)));
            Add(p + "self_attn.k_proj.weight", Matrix(HalfSplit(layer.Wk, c.KvHeads)));
            Add(p + "self_attn.v_proj.weight", Matrix(layer.Wv));
            Add(p + "self_attn.o_proj.weight", Matrix(layer.Wo));
            Vector(p + "self_attn.q_proj.bias", layer.Bq is null ? null : HalfSplit(layer.Bq.Reshaped(c.QDim, 1), c.Heads)
                .Reshaped(1, c.QDim));
            Vector(p + "self_attn.k_proj.bias", layer.Bk is null ? null : HalfSplit(layer.Bk.Reshaped(c.KvDim, 1), c.KvHeads)
                .Reshaped(1, c.KvDim));
            Vector(p + "self_attn.v_proj.bias", layer.Bv);
            Vector(p + "post_attention_layernorm.weight", layer.FfnNorm);
            Add(p + "mlp.gate_proj.weight", Matrix(layer.WGate));
            Add(p + "mlp.down_proj.weight", Matrix(layer.WDown));
            Add(p + "mlp.up_proj.weight", Matrix(layer.WUp));
        }
        Vector("model.norm.weight", w.FinalNorm);
        if (!c.TiedEmbeddings) Add("lm_head.weight", Matrix(w.Output));

        Directory.CreateDirectory(dir);
        var config = new Dictionary<string, object?>
        {
            // q/k/v biases without an o_proj bias are Qwen2's layout (HF's Llama attention_bias adds one to o_proj too).
            ["architectures"] = new[] { c.AttentionBias ? "Qwen2ForCausalLM" : "LlamaForCausalLM" },
            ["model_type"] = c.AttentionBias ? "qwen2" : "llama", ["hidden_act"] = "silu",
            ["hidden_size"] = c.Dim, ["intermediate_size"] = c.HiddenDim, ["num_hidden_layers"] = c.Layers,
            ["num_attention_heads"] = c.Heads, ["num_key_value_heads"] = c.KvHeads, ["head_dim"] = c.HeadDim,
            ["vocab_size"] = c.VocabSize, ["max_position_embeddings"] = c.MaxSeqLen, ["rms_norm_eps"] = c.RmsNormEps,
            ["rope_theta"] = c.RopeTheta, ["tie_word_embeddings"] = c.TiedEmbeddings,
            ["torch_dtype"] = TorchDtype(tensors[0].Item2.Type),
            ["bos_token_id"] = c.BosTokenId,
            ["eos_token_id"] = c.EosTokenIds.Count == 1 ? c.EosTokenIds[0] : c.EosTokenIds.Count == 0 ? null : c.EosTokenIds,
        };
        if (c.RopeScaling is { } rs)
            config["rope_scaling"] = new Dictionary<string, object>
            {
                ["rope_type"] = rs.Type, ["factor"] = rs.Factor, ["low_freq_factor"] = rs.LowFreqFactor,
                ["high_freq_factor"] = rs.HighFreqFactor, ["original_max_position_embeddings"] = rs.OriginalMaxPositionEmbeddings,
            };
        File.WriteAllText(Path.Combine(dir, "config.json"), JsonSerializer.Serialize(config, Indented));
        SafetensorsWriter.Write(Path.Combine(dir, "model.safetensors"), tensors);
    }

    private static string TorchDtype(WeightType t) => t switch
    {
        WeightType.F16 => "float16",
        WeightType.BF16 => "bfloat16",
        _ => "float32",
    };
}
