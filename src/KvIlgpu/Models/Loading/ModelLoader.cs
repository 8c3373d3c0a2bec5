namespace KvIlgpu.Models.Loading;

/// <summary>Picks the loader from what the path is: a folder with config.json (Hugging Face),
/// a .gguf file, or a llama2.c .bin checkpoint.</summary>
public static class ModelLoader
{
    /// <summary>Loads a model's weights and shape from an HF folder, a .gguf file or a llama2.c .bin; every failure is
    /// an <see cref="InvalidModelException"/> or a missing-file error naming the path.</summary>
    public static LlamaWeights Load(string path, IProgress<LoadProgress>? progress = null)
    {
        if (Directory.Exists(path)) return Guarded(path, () => HuggingFaceLoader.Load(path, progress));
        if (!File.Exists(path)) throw new FileNotFoundException($"model not found: {path}", path);
        return Guarded(path, () => IsGguf(path) ? GgufLoader.Load(path, progress) : Llama2cLoader.Load(path, progress));
    }

    /// <summary>The loaders check what they read and throw <see cref="InvalidModelException"/>; anything else a damaged
    /// file still provokes (a check they lack) becomes that exception too, naming the path, so no other type escapes.</summary>
    private static LlamaWeights Guarded(string path, Func<LlamaWeights> load)
    {
        try { return load(); }
        catch (Exception e) when (e is not (InvalidModelException or FileNotFoundException or DirectoryNotFoundException
            or OperationCanceledException))
        {
            throw new InvalidModelException(path, $"cannot be read: {e.Message} ({e.GetType().Name})", e);
        }
    }

    /// <summary>Whether the file starts with GGUF's magic.</summary>
    public static bool IsGguf(string path)
    {
        using var s = File.OpenRead(path);
        Span<byte> magic = stackalloc byte[4];
        return s.Read(magic) == 4 && magic.SequenceEqual("GGUF"u8);
    }
}
