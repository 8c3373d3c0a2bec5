namespace KvIlgpu.Models;

/// <summary>A model file that cannot be used: truncated, inconsistent, or of an unsupported kind.
/// The message names the file and, where it applies, the tensor.</summary>
public sealed class InvalidModelException(string path, string message, Exception? inner = null)
    : Exception($"{path}: {message}", inner)
{
    /// <summary>The file or folder at fault.</summary>
    public string ModelPath { get; } = path;
}
