using KvIlgpu.Models;

namespace KvIlgpu.Training;

/// <summary>Parameters of loaded weights by HF name.</summary>
internal sealed class TrainableLlamaLoader(LlamaWeights w)
{
    public IEnumerable<(string, float[])> Parameters
    {
        get
        {
            yield return ("model.embed_tokens.weight", w.TokenEmbedding.ToFloat());
            for (int l = 0; l < w.Layers.Count; l++)
            {
                var layerWeights = w.Layers[l];
                string p = $"model.layers.{l}.";
                yield return (p + "input_layernorm.weight", layerWeights.AttentionNorm.ToFloat());
                yield return (p + "post_attention_layernorm.weight", layerWeights.FfnNorm.ToFloat());
                yield return (p + "self_attn.q_proj.weight", layerWeights.Wq.ToFloat());
                yield return (p + "self_attn.k_proj.weight", layerWeights.Wk.ToFloat());
                yield return (p + "self_attn.v_proj.weight", layerWeights.Wv.ToFloat());
                yield return (p + "self_attn.o_proj.weight", layerWeights.Wo.ToFloat());
                yield return (p + "mlp.gate_proj.weight", layerWeights.WGate.ToFloat());
                yield return (p + "mlp.up_proj.weight", layerWeights.WUp.ToFloat());
                yield return (p + "mlp.down_proj.weight", layerWeights.WDown.ToFloat());
            }
            yield return ("model.norm.weight", w.FinalNorm.ToFloat());
            if (!w.Config.TiedEmbeddings) yield return ("lm_head.weight", w.Output.ToFloat());
        }
    }
}
