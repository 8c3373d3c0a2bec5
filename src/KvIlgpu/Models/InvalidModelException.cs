namespace KvIlgpu.Models;

/// <summary>A model file that cannot be used: truncated, inconsistent, or of an unsupported kind.
/// The message names the file and, where it applies, the tensor.</summary>
public sealed class InvalidModelException(string source, string message, Exception? inner = null)
    : Exception($"{source}: {message}", inner)
{
    public string Source_ { get; } = source;
}
