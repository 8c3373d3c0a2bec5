using System.Text.Json;

namespace KvIlgpu.Models.Loading;

/// <summary>Loads a Hugging Face model directory: config.json (llama, mistral, qwen2) with
/// model.safetensors or a sharded model.safetensors.index.json, in f32, f16 or bf16.</summary>
internal static class HuggingFaceLoader
{
    private static readonly string[] SupportedTypes = ["llama", "mistral", "qwen2"];

    public static ModelConfig ReadConfig(string dir)
    {
        var path = System.IO.Path.Combine(dir, "config.json");
        if (!File.Exists(path)) throw new FileNotFoundException($"config.json not found in {dir}", path);
        JsonElement root;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            root = doc.RootElement.Clone();
        }
        catch (JsonException e) { throw new InvalidModelException(path, "not valid JSON", e); }
        if (root.ValueKind != JsonValueKind.Object) throw new InvalidModelException(path, "config.json must be a JSON object");

        // A key that is present must have its JSON type: a wrong type is an error that names the key, never a silent default.
        InvalidModelException Wrong(string key, string expected, JsonElement v) =>
            new(path, $"key '{key}' must be {expected}, got " +
                $"{(v.ValueKind == JsonValueKind.String ? v.GetRawText() : v.ValueKind.ToString().ToLowerInvariant())}");
        bool Present(string key, out JsonElement v) => root.TryGetProperty(key, out v) && v.ValueKind != JsonValueKind.Null;
        string? Str(string key) => !Present(key, out var v) ? null : v.ValueKind == JsonValueKind.String ? v.GetString()
            : throw Wrong(key, "a string", v);
        int Int(string key, int? fallback = null)
        {
            if (!Present(key, out var v)) return fallback ?? throw new InvalidModelException(path, $"missing '{key}'");
            return v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int n) ? n : throw Wrong(key, "an integer", v);
        }
        int? OptionalInt(string key) => Present(key, out _) ? Int(key) : null;
        float Float(string key, float fallback) =>
            !Present(key, out var v) ? fallback : v.ValueKind == JsonValueKind.Number ? v.GetSingle() : throw Wrong(key, "a number", v);
        bool Bool(string key, bool fallback) =>
            !Present(key, out var v) ? fallback
            : v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : throw Wrong(key, "true or false", v);

        string modelType = Str("model_type") ?? "";
        if (!SupportedTypes.Contains(modelType))
            throw new InvalidModelException(path,
                $"model_type '{modelType}' is not supported (supported: {string.Join(", ", SupportedTypes)})");
        // The MLP is SwiGLU: SiLU of the gate times the up projection. Another activation would run as something else.
        string act = Str("hidden_act") ?? "silu";
        if (act != "silu") throw new InvalidModelException(path, $"hidden_act '{act}' is not supported (the model runs SwiGLU with silu)");
        int heads = Int("num_attention_heads");
        int dim = Int("hidden_size");
        RopeScaling? scaling = null;
        if (Present("rope_scaling", out var rs))
        {
            if (rs.ValueKind != JsonValueKind.Object) throw Wrong("rope_scaling", "an object", rs);
            string? S(string k) => rs.TryGetProperty(k, out var v) && v.ValueKind != JsonValueKind.Null
                ? v.ValueKind == JsonValueKind.String ? v.GetString() : throw Wrong($"rope_scaling.{k}", "a string", v) : null;
            string type = S("rope_type") ?? S("type") ?? "default";
            float F(string k, float d) => !rs.TryGetProperty(k, out var v) || v.ValueKind == JsonValueKind.Null ? d
                : v.ValueKind == JsonValueKind.Number ? v.GetSingle() : throw Wrong($"rope_scaling.{k}", "a number", v);
            if (type != "default")
            {
                if (type != "llama3" && type != "linear")
                    throw new InvalidModelException(path, $"rope_scaling type '{type}' is not supported (supported: llama3, linear)");
                scaling = new RopeScaling(type, F("factor", 1f), F("low_freq_factor", 1f), F("high_freq_factor", 4f),
                    (int)F("original_max_position_embeddings", 8192));
            }
        }
        var eos = new List<int>();
        if (Present("eos_token_id", out var eosValue))
        {
            if (eosValue.ValueKind == JsonValueKind.Array)
                eos.AddRange(eosValue.EnumerateArray().Select(x => x.ValueKind == JsonValueKind.Number && x.TryGetInt32(out int id) ? id
                    : throw Wrong("eos_token_id", "a token id or a list of them", x)));
            else eos.Add(Int("eos_token_id"));
        }
        return new ModelConfig
        {
            Architecture = modelType,
            Dim = dim,
            HiddenDim = Int("intermediate_size"),
            Layers = Int("num_hidden_layers"),
            Heads = heads,
            KvHeads = Int("num_key_value_heads", heads),
            VocabSize = Int("vocab_size"),
            MaxSeqLen = Int("max_position_embeddings"),
            HeadDim = OptionalInt("head_dim") ?? (heads > 0 ? dim / heads : 0),
            RmsNormEps = Float("rms_norm_eps", 1e-6f),
            RopeTheta = Float("rope_theta", 10000f),
            RopeLayout = RopeLayout.HalfSplit,
            RopeScaling = scaling,
            AttentionBias = modelType == "qwen2" || Bool("attention_bias", false),
            TiedEmbeddings = Bool("tie_word_embeddings", false),
            BosTokenId = OptionalInt("bos_token_id"),
            EosTokenIds = eos,
        }.Validated(path);
    }

    public static LlamaWeights Load(string dir, IProgress<LoadProgress>? progress = null)
    {
        var config = ReadConfig(dir);
        var files = OpenFiles(dir);
        var where = new Dictionary<string, SafetensorsFile>();
        foreach (var f in files) foreach (var name in f.Entries.Keys) where[name] = f;
        long total = files.Sum(f => f.Entries.Values.Sum(e => e.End - e.Begin));
        long done = 0;

        WeightTensor? TryRead(string name)
        {
            if (!where.TryGetValue(name, out var f)) return null;
            var t = f.Read(name, progress, done, total);
            done += t.ByteSize;
            return t;
        }
        WeightTensor Read(string name) => TryRead(name) ?? throw new InvalidModelException(dir, $"tensor {name} is missing");

        var emb = Read("model.embed_tokens.weight");
        var layers = new List<LayerWeights>();
        for (int l = 0; l < config.Layers; l++)
        {
            string p = $"model.layers.{l}.";
            WeightTensor? Bias(string n) => config.AttentionBias ? Read(p + n) : TryRead(p + n);
            layers.Add(new LayerWeights(
                Read(p + "input_layernorm.weight"),
                Read(p + "self_attn.q_proj.weight"), Read(p + "self_attn.k_proj.weight"),
                Read(p + "self_attn.v_proj.weight"), Read(p + "self_attn.o_proj.weight"),
                Bias("self_attn.q_proj.bias"), Bias("self_attn.k_proj.bias"), Bias("self_attn.v_proj.bias"),
                Read(p + "post_attention_layernorm.weight"),
                Read(p + "mlp.gate_proj.weight"), Read(p + "mlp.down_proj.weight"), Read(p + "mlp.up_proj.weight")));
        }
        var norm = Read("model.norm.weight");
        var head = config.TiedEmbeddings ? null : TryRead("lm_head.weight");
        if (head == null && !config.TiedEmbeddings)
            throw new InvalidModelException(dir, "tensor lm_head.weight is missing and tie_word_embeddings is false");
        // Norm vectors and biases are small and used in f32 everywhere.
        static WeightTensor F32(WeightTensor t) => t.ConvertTo(WeightType.F32);
        layers = layers.Select(l => l with
        {
            AttentionNorm = F32(l.AttentionNorm),
            FfnNorm = F32(l.FfnNorm),
            Bq = l.Bq is null ? null : F32(l.Bq),
            Bk = l.Bk is null ? null : F32(l.Bk),
            Bv = l.Bv is null ? null : F32(l.Bv),
        }).ToList();
        return new LlamaWeights(config, emb, layers, F32(norm), head ?? emb, dir);
    }

    private static List<SafetensorsFile> OpenFiles(string dir)
    {
        var single = System.IO.Path.Combine(dir, "model.safetensors");
        var index = System.IO.Path.Combine(dir, "model.safetensors.index.json");
        if (File.Exists(single)) return [SafetensorsFile.Open(single)];
        if (File.Exists(index))
        {
            JsonElement root;
            try { root = JsonDocument.Parse(File.ReadAllText(index)).RootElement; }
            catch (JsonException e) { throw new InvalidModelException(index, "not valid JSON", e); }
            if (!root.TryGetProperty("weight_map", out var map))
                throw new InvalidModelException(index, "missing 'weight_map'");
            return map.EnumerateObject().Select(p => p.Value.GetString()!).Distinct()
                .Select(f => SafetensorsFile.Open(System.IO.Path.Combine(dir, f))).ToList();
        }
        throw new FileNotFoundException($"no model.safetensors or model.safetensors.index.json in {dir}", single);
    }
}
