namespace KvIlgpu.Evaluation;

/// <summary>One (policy, budget) result. Perplexity, KL(full || compressed) and top-1 agreement come from
/// teacher-forced corpus segments whose cache is compressed as the context grows; passkey accuracy from greedy
/// retrieval. A retrieval-only run (no corpus segments) leaves the corpus columns null and measures the compression
/// ratio on the retrieval prompts instead. MeanKvBytes is the KV block memory the sequence held, averaged over the
/// decode steps of the corpus segments (what the budget controls); PeakKvBytes is the most it held, usually at the end
/// of a prefill, before its compression. Both count K, V, position and metric of the blocks held; the engine's fixed
/// block tables are left out. KeptPerLayer is where the budget went: the KVs each layer held per KV head, averaged over
/// the decode steps of the corpus segments. Projection and DimBudget name the feature axis: the projection ("none", a
/// projection's name, or NAME:searched for a file's own searched ranks) and the mean kept fraction of feature dims of the
/// ranks in effect; KvBytesFraction is the share of the full cache's KV bytes kept: the token share measured from the
/// blocks held (MeanKvBytes against the full reference cache's; on retrieval-only runs, the KVs kept times the bytes per
/// token against the reference's); a projection's cache holds only its coordinates, so its bytes are measured, while
/// ThinK's pruned channels are still held and count at their nominal share. Storage is how the cache held K and V (f32,
/// f16, bf16, q8); every row's KL is to the full cache in the first storage type compared (f32 when several are).
/// </summary>
public sealed record EvaluationRow(string Policy, string Budget, double CompressionRatio, double? Perplexity, double? KlToFull,
    double? Top1Agreement, double? PasskeyAccuracy, long? PeakKvBytes, double? NeedleAccuracy = null, long? MeanKvBytes = null,
    IReadOnlyList<double>? KeptPerLayer = null, string Projection = "none", double DimBudget = 1, double? KvBytesFraction = null,
    string Storage = "f32")
{
    /// <summary>The method the row measures, for plots and tables: the policy, the projection, or both composed, and the
    /// storage type when it is not f32.</summary>
    public string Method => (Projection == "none" ? Policy
        : Policy == "full" ? Projection
        : $"{Policy} x {Projection}@{DimBudget.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture)}")
        + (Storage == "f32" ? "" : $" {Storage}");
}
