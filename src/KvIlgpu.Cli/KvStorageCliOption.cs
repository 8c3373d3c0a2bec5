using System.CommandLine;
using KvIlgpu.Cache;

namespace KvIlgpu.Cli;

/// <summary>--kv-dtype: how the KV cache stores keys and values, shared by generate, batch, passkey and eval.</summary>
internal sealed class KvStorageCliOption
{
    public readonly Option<string> Option = new("--kv-dtype")
    {
        Description = "KV cache storage: auto (the model's weight type; f16 for quantised GGUF), f32, f16, bf16 or q8 " +
            "(int8 with a scale per token and head)",
        DefaultValueFactory = _ => "auto",
    };

    public void AddTo(Command command) => command.Options.Add(Option);

    /// <summary>The storage type given, checked before any model loads.</summary>
    public KvStorageType Build(ParseResult r) => Parse(r.GetValue(Option)!, "--kv-dtype");

    /// <summary>A storage type by name (auto, f32, f16, bf16, q8), or an error naming the option.</summary>
    public static KvStorageType Parse(string value, string option) => value.Trim().ToLowerInvariant() switch
    {
        "auto" => KvStorageType.Auto,
        "f32" => KvStorageType.F32,
        "f16" => KvStorageType.F16,
        "bf16" => KvStorageType.BF16,
        "q8" => KvStorageType.Q8,
        _ => throw new ArgumentException($"{option} must be auto, f32, f16, bf16 or q8 (got '{value}')"),
    };

    /// <summary>The name a storage type goes by on the command line and in reports.</summary>
    public static string Name(KvStorageType type) => type.ToString().ToLowerInvariant();
}
