namespace KvIlgpu.Engine;

/// <summary>What happened to one request.</summary>
/// <param name="Id">The request's id (given at submission, or made up).</param>
/// <param name="TokenIds">The generated tokens (the prompt left out).</param>
/// <param name="Text">The generated text, when the model has a tokenizer.</param>
/// <param name="StopReason"><c>eos</c>, <c>max_tokens</c> or <c>context_full</c>.</param>
/// <param name="Preemptions">How often the request gave up its blocks and was recomputed.</param>
/// <param name="PromptTokens">Tokens of the prompt.</param>
/// <param name="TimeToFirstToken">From submission to the first generated token.</param>
/// <param name="Total">From submission to the end.</param>
/// <param name="KvUsage">The KV cache this request held: blocks and bytes, peak, evicted KVs, KVs kept per layer.</param>
public sealed record GenerationResult(string Id, IReadOnlyList<int> TokenIds, string? Text, string StopReason, int Preemptions,
    int PromptTokens, TimeSpan TimeToFirstToken, TimeSpan Total, KvUsage KvUsage)
{
    /// <summary>KVs this request's compression evicted.</summary>
    public long EvictedKvs => KvUsage.EvictedKvs;
    /// <summary>Generated tokens after the first, per second after the first.</summary>
    public double DecodeTokensPerSecond => TokenIds.Count <= 1 ? 0
        : (TokenIds.Count - 1) / Math.Max((Total - TimeToFirstToken).TotalSeconds, 1e-9);
    /// <summary>Prompt tokens per second of the time to the first token.</summary>
    public double PrefillTokensPerSecond => PromptTokens / Math.Max(TimeToFirstToken.TotalSeconds, 1e-9);
}
