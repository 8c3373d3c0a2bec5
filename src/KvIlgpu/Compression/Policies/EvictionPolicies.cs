namespace KvIlgpu.Compression;

/// <summary>The registered policies by name. A new policy is one file (a scorer plus a selection rule) and one line
/// here; the generic policy tests run every policy listed.</summary>
internal static class EvictionPolicies
{
    /// <summary>Every policy, by name, in the order the help text and the tests list them.</summary>
    public static IReadOnlyDictionary<string, EvictionPolicy> All { get; } = new EvictionPolicy[]
    {
        new FullCachePolicy(),
        new KvCompressPolicy(),
        new KvCompressUniformPolicy(),
        new KvCompressEvenLayerPolicy(),
        new StreamingLlmPolicy(),
        new H2oPolicy(),
        new SnapKvPolicy(),
        new PyramidKvPolicy(),
        new AdaKvPolicy(),
    }.ToDictionary(p => p.Name);

    /// <summary>The policy of a name; an unknown name gives an error that lists the known ones.</summary>
    public static EvictionPolicy Get(string name) => All.TryGetValue(name, out var policy) ? policy
        : throw new ArgumentException($"unknown policy '{name}' (known: {string.Join(", ", All.Keys)})");
}
