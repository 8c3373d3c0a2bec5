using System.Globalization;
using KvIlgpu.Models;
using KvIlgpu.Models.Loading;
using KvIlgpu.Models.Saving;

namespace KvIlgpu.Projection;

/// <summary>A <see cref="KvProjection"/> as one safetensors file: per layer L the F32 tensors layers.L.key_basis and
/// layers.L.value_basis ([kv_heads, head_dim, head_dim], row i column j of each head's U) and layers.L.key_mean,
/// layers.L.value_mean ([kv_heads, head_dim]); the metadata holds format "kvilgpu-kv-projection", the model's shape
/// (layers, kv_heads, head_dim), the method, and key_ranks / value_ranks (comma-separated, layer by layer, head by
/// head). Values are written and read back bit for bit.</summary>
public static class KvProjectionFile
{
    /// <summary>The metadata value of "format" that marks a projection file.</summary>
    public const string Format = "kvilgpu-kv-projection";

    /// <summary>Writes the projection to path (replacing it).</summary>
    public static void Save(KvProjection p, string path, IReadOnlyDictionary<string, string>? extraMetadata = null)
    {
        int d = p.HeadDim, heads = p.KvHeads;
        var tensors = new List<(string, WeightTensor, long[])>();
        for (int l = 0; l < p.Layers; l++)
            foreach (var part in new[] { KvPart.Key, KvPart.Value })
            {
                var basis = p.Bases(part).AsSpan(l * heads * d * d, heads * d * d).ToArray();
                var mean = p.Means(part).AsSpan(l * heads * d, heads * d).ToArray();
                tensors.Add((KvProjection.TensorName(part, l), WeightTensor.FromF32(KvProjection.TensorName(part, l), heads * d, d, basis),
                    [heads, d, d]));
                tensors.Add((KvProjection.MeanName(part, l), WeightTensor.FromF32(KvProjection.MeanName(part, l), heads, d, mean),
                    [heads, d]));
            }
        var meta = new Dictionary<string, string>
        {
            ["format"] = Format,
            ["method"] = p.Method,
            ["layers"] = p.Layers.ToString(CultureInfo.InvariantCulture),
            ["kv_heads"] = heads.ToString(CultureInfo.InvariantCulture),
            ["head_dim"] = d.ToString(CultureInfo.InvariantCulture),
            [KvProjection.RankKey(KvPart.Key)] = string.Join(",", p.AllRanks(KvPart.Key)),
            [KvProjection.RankKey(KvPart.Value)] = string.Join(",", p.AllRanks(KvPart.Value)),
        };
        foreach (var (k, v) in extraMetadata ?? new Dictionary<string, string>()) meta.TryAdd(k, v);
        SafetensorsWriter.Write(path, tensors, meta);
    }

    /// <summary>Reads a projection file and checks it against the model's shape (see <see cref="KvProjection.CheckedFor"/>);
    /// every failure is an <see cref="InvalidModelException"/> naming the file and the tensor or metadata key.</summary>
    public static KvProjection Load(string path, ModelConfig model) => Load(path).CheckedFor(model, path);

    /// <summary>Reads a projection file and checks it against itself (orthogonal bases, finite values, ranks in range).</summary>
    public static KvProjection Load(string path)
    {
        if (!File.Exists(path)) throw new InvalidModelException(path, "no such projection file");
        var f = SafetensorsFile.Open(path);
        string Meta(string key) => f.Metadata.TryGetValue(key, out var v) ? v
            : throw new InvalidModelException(path, $"metadata {key} is missing (not a projection file written by kvilgpu kv-projection?)");
        if (Meta("format") != Format)
            throw new InvalidModelException(path, $"metadata format is '{Meta("format")}', not {Format}: not a KV projection file");
        int Size(string key)
        {
            var v = Meta(key);
            return int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n is > 0 and <= 1 << 16 ? n
                : throw new InvalidModelException(path, $"metadata {key} is '{v}', not a positive size");
        }
        int layers = Size("layers"), heads = Size("kv_heads"), d = Size("head_dim");
        int[] Ranks(KvPart part)
        {
            string key = KvProjection.RankKey(part);
            var items = Meta(key).Split(',');
            if (items.Length != layers * heads)
                throw new InvalidModelException(path, $"metadata {key} lists {items.Length} ranks; {layers} layers x {heads} KV heads " +
                    "need " +
                    $"{layers * heads}");
            return items.Select(s => int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out int r) ? r
                : throw new InvalidModelException(path, $"metadata {key} holds '{s}', not a rank")).ToArray();
        }
        var expected = new HashSet<string>();
        float[] Join(Func<int, string> name, params long[] shape)
        {
            var all = new List<float>();
            for (int l = 0; l < layers; l++)
            {
                expected.Add(name(l));
                all.AddRange(f.ReadF32(name(l), shape));
            }
            return [.. all];
        }
        var keyBases = Join(l => KvProjection.TensorName(KvPart.Key, l), heads, d, d);
        var keyMeans = Join(l => KvProjection.MeanName(KvPart.Key, l), heads, d);
        var valueBases = Join(l => KvProjection.TensorName(KvPart.Value, l), heads, d, d);
        var valueMeans = Join(l => KvProjection.MeanName(KvPart.Value, l), heads, d);
        foreach (var name in f.Entries.Keys.Where(n => !expected.Contains(n)).Order(StringComparer.Ordinal).Take(1))
            throw new InvalidModelException(path, $"tensor {name} is not part of a {layers}-layer projection");
        return new KvProjection(f.Metadata.GetValueOrDefault("method", "unknown"), layers, heads, d, keyBases, keyMeans, valueBases,
            valueMeans, Ranks(KvPart.Key), Ranks(KvPart.Value))
        { Source = path }.Checked(path);
    }
}
