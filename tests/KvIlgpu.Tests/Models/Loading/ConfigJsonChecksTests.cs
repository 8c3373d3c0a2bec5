using System.Text.Json.Nodes;
using KvIlgpu.Models;
using KvIlgpu.Models.Loading;
using KvIlgpu.Tests.Support;

namespace KvIlgpu.Tests.Models.Loading;

/// <summary>config.json keys checked by JSON type and meaning: the error names config.json and the key, never a silent
/// default and never a model that runs as something else.</summary>
public class ConfigJsonChecksTests
{
    [Theory]
    [InlineData("rms_norm_eps", "\"abc\"", "key 'rms_norm_eps' must be a number, got \"abc\"")]
    [InlineData("num_attention_heads", "2.5", "key 'num_attention_heads' must be an integer, got number")]
    [InlineData("tie_word_embeddings", "\"yes\"", "key 'tie_word_embeddings' must be true or false, got \"yes\"")]
    [InlineData("eos_token_id", "[2, \"x\"]", "key 'eos_token_id' must be a token id or a list of them, got \"x\"")]
    [InlineData("rope_scaling", "7", "key 'rope_scaling' must be an object, got number")]
    [InlineData("hidden_act", "\"gelu\"", "hidden_act 'gelu' is not supported")]
    [InlineData("model_type", "\"gpt2\"", "model_type 'gpt2' is not supported")]
    [InlineData("rope_theta", "-5", "rope_theta must be positive and finite")]
    [InlineData("rms_norm_eps", "0", "rms_norm_eps must be positive and finite")]
    [InlineData("bos_token_id", "999", "token id 999 (bos or eos) is outside the vocabulary of 64")]
    [InlineData("max_position_embeddings", "2147483647", "the context must be at most")]
    [InlineData("num_attention_heads", "0", "head counts must be positive")]
    public void A_bad_key_is_named(string key, string json, string expected)
    {
        using var dir = new TempDir();
        TestModels.WriteHuggingFace(dir.File("hf"), TestModels.Random(TestModels.Config(), seed: 2), WeightType.F32);
        var path = Path.Combine(dir.File("hf"), "config.json");
        var config = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        config[key] = JsonNode.Parse(json);
        File.WriteAllText(path, config.ToJsonString());
        var e = Assert.Throws<InvalidModelException>(() => ModelLoader.Load(dir.File("hf")));
        Assert.StartsWith(path + ": ", e.Message);
        Assert.Contains(expected, e.Message);
    }
}
