namespace KvIlgpu.Engine;

/// <summary>A submitted request: its token stream and its final result.</summary>
public sealed class GenerationHandle
{
    internal GenerationHandle(Sequence s) { Id = s.Id; Tokens = s.Output.Reader.ReadAllAsync(); Completion = s.Completion.Task; }
    public string Id { get; }
    /// <summary>Tokens as they are generated; ends when the request finishes, throws if it failed or was cancelled.</summary>
    public IAsyncEnumerable<GeneratedToken> Tokens { get; }
    public Task<GenerationResult> Completion { get; }
}
