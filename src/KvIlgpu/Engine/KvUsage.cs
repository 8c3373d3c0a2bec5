namespace KvIlgpu.Engine;

/// <summary>The KV cache one request held, counted in blocks of the paged cache (K, V, position and metric of
/// every slot; the engine's block tables are a fixed allocation and are left out). Steps are the forward steps that
/// gave the request a token (its decode steps, the first one ending the prefill); each is counted after that step's
/// compression.</summary>
/// <param name="BytesPerBlock">Bytes of one block.</param>
/// <param name="BlocksHeld">Blocks held when the request finished.</param>
/// <param name="PeakBlocks">The most blocks it held at once (usually at the end of a prefill, before compression).</param>
/// <param name="Steps">Steps that gave it a token.</param>
/// <param name="BlockSteps">Blocks held, summed over those steps.</param>
/// <param name="EvictedKvs">KVs its compression evicted.</param>
/// <param name="KeptPerLayerSums">Per layer, the KVs held per KV head, summed over those steps.</param>
public sealed record KvUsage(long BytesPerBlock, int BlocksHeld, int PeakBlocks, int Steps, long BlockSteps, long EvictedKvs,
    IReadOnlyList<double> KeptPerLayerSums)
{
    /// <summary>Bytes of the blocks held when the request finished.</summary>
    public long BytesHeld => BlocksHeld * BytesPerBlock;
    /// <summary>Bytes of the most blocks held at once.</summary>
    public long PeakBytes => PeakBlocks * BytesPerBlock;
    /// <summary>Blocks held, averaged over the steps that gave a token.</summary>
    public double MeanBlocks => BlockSteps / (double)Math.Max(1, Steps);
    /// <summary>Bytes held, averaged over the steps that gave a token.</summary>
    public double MeanBytes => MeanBlocks * BytesPerBlock;
    /// <summary>Per layer, the KVs held per KV head, averaged over the steps that gave a token.</summary>
    public IReadOnlyList<double> KeptPerLayer => [.. KeptPerLayerSums.Select(k => k / Math.Max(1, Steps))];
}
