namespace KvIlgpu.Engine;

/// <summary>A submitted request: its token stream and its final result.</summary>
public sealed class GenerationHandle
{
    internal GenerationHandle(Sequence s) { Id = s.Id; Tokens = s.Output.Reader.ReadAllAsync(); Completion = s.Completion.Task; }
    /// <summary>The request's id.</summary>
    public string Id { get; }
    /// <summary>Tokens as they are generated; ends when the request finishes, throws if it failed or was cancelled.</summary>
    public IAsyncEnumerable<GeneratedToken> Tokens { get; }
    /// <summary>The request's result, with its stop reason, timing and KV usage; faults if the request failed, is
    /// cancelled if it was.</summary>
    public Task<GenerationResult> Completion { get; }
}
