using System.Text.Json;
using KvIlgpu.Models;
using KvIlgpu.Models.Saving;

namespace KvIlgpu.Training;

/// <summary>Writes a model as a Hugging Face folder (config.json, model.safetensors, and the tokenizer when given),
/// which every loader of this project, and HF transformers, reads back.</summary>
internal static class ModelSaver
{
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    public static void Save(string dir, LlamaWeights w, string? tokenizerJson = null)
    {
        var c = w.Config;
        if (c.RopeLayout != RopeLayout.HalfSplit) throw new ArgumentException("HF folders use half-split RoPE; convert the q/k rows first");
        Directory.CreateDirectory(dir);
        var config = new Dictionary<string, object?>
        {
            ["architectures"] = new[] { "LlamaForCausalLM" }, ["model_type"] = "llama",
            ["hidden_size"] = c.Dim, ["intermediate_size"] = c.HiddenDim, ["num_hidden_layers"] = c.Layers,
            ["num_attention_heads"] = c.Heads, ["num_key_value_heads"] = c.KvHeads, ["head_dim"] = c.HeadDim,
            ["vocab_size"] = c.VocabSize, ["max_position_embeddings"] = c.MaxSeqLen, ["rms_norm_eps"] = c.RmsNormEps,
            ["rope_theta"] = c.RopeTheta, ["tie_word_embeddings"] = c.TiedEmbeddings, ["torch_dtype"] = "float32",
            ["bos_token_id"] = c.BosTokenId, ["eos_token_id"] = c.EosTokenIds.Count > 0 ? c.EosTokenIds[0] : null,
        };
        File.WriteAllText(Path.Combine(dir, "config.json"), JsonSerializer.Serialize(config, Indented));
        var tensors = new List<(string, WeightTensor, long[])>();
        void Add(string name, WeightTensor t) => tensors.Add((name, t, t.Rows == 1 ? [t.Cols] : [t.Rows, t.Cols]));
        Add("model.embed_tokens.weight", w.TokenEmbedding);
        for (int l = 0; l < c.Layers; l++)
        {
            var layerWeights = w.Layers[l];
            string p = $"model.layers.{l}.";
            Add(p + "input_layernorm.weight", layerWeights.AttentionNorm);
            Add(p + "self_attn.q_proj.weight", layerWeights.Wq); Add(p + "self_attn.k_proj.weight", layerWeights.Wk);
            Add(p + "self_attn.v_proj.weight", layerWeights.Wv); Add(p + "self_attn.o_proj.weight", layerWeights.Wo);
            Add(p + "post_attention_layernorm.weight", layerWeights.FfnNorm);
            Add(p + "mlp.gate_proj.weight", layerWeights.WGate); Add(p + "mlp.down_proj.weight", layerWeights.WDown); Add(p
                + "mlp.up_proj.weight", layerWeights.WUp);
        }
        Add("model.norm.weight", w.FinalNorm);
        if (!c.TiedEmbeddings) Add("lm_head.weight", w.Output);
        SafetensorsWriter.Write(Path.Combine(dir, "model.safetensors"), tensors);
        if (tokenizerJson != null) File.Copy(tokenizerJson, Path.Combine(dir, "tokenizer.json"), overwrite: true);
    }
}
