namespace KvIlgpu.Models;

/// <summary>The weights of one decoder layer, in Hugging Face's [out_features, in_features] layout.</summary>
public sealed record LayerWeights(
    WeightTensor AttentionNorm,
    WeightTensor Wq, WeightTensor Wk, WeightTensor Wv, WeightTensor Wo,
    WeightTensor? Bq, WeightTensor? Bk, WeightTensor? Bv,
    WeightTensor FfnNorm,
    WeightTensor WGate, WeightTensor WDown, WeightTensor WUp);
