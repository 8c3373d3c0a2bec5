using KvIlgpu.Projection;

namespace KvIlgpu.Evaluation;

/// <summary>One item of the evaluator's feature axis: no projection (Projection null), a projection evaluated at every
/// dim budget (uniform ranks) or, with Searched, once at the projection's own (searched) ranks, or, with ThinK, ThinK's
/// key channel pruning at every dim budget (the budget is its kept share of key channels; values stay whole).</summary>
/// <param name="Name">What rows and plots call it ("none", "pca", "trained", "think", ...).</param>
/// <param name="Projection">The projection; null for none and for ThinK.</param>
/// <param name="Searched">Use the projection's own ranks instead of uniform ranks at each dim budget.</param>
/// <param name="ThinK">Evaluate ThinK instead of a projection.</param>
public sealed record ProjectionChoice(string Name, KvProjection? Projection = null, bool Searched = false, bool ThinK = false)
{
    /// <summary>No projection: every feature dim kept.</summary>
    public static ProjectionChoice None { get; } = new("none");

    /// <summary>ThinK at every dim budget.</summary>
    public static ProjectionChoice ThinKPruning { get; } = new("think", ThinK: true);

    /// <summary>The settings this choice is evaluated at.</summary>
    public IEnumerable<FeatureSetting> Settings(IReadOnlyList<double> dimBudgets)
    {
        if (ThinK) foreach (var b in dimBudgets) yield return new(null, new ThinKOptions(b), Name, b);
        else if (Projection == null) yield return new(null, null, Name, 1);
        else if (Searched) yield return new(Projection, null, Name + ":searched", Projection.KeptFraction);
        else foreach (var b in dimBudgets) yield return new(Projection.WithUniformRanks(b), null, Name, b);
    }
}

/// <summary>One point of the feature axis: a projection at its ranks, or ThinK, or neither.</summary>
/// <param name="Projection">The projection every request goes through (null: none).</param>
/// <param name="ThinK">ThinK's pruning for every request (null: none).</param>
/// <param name="Name">The row's projection name.</param>
/// <param name="DimBudget">The dim budget asked for.</param>
public sealed record FeatureSetting(KvProjection? Projection, ThinKOptions? ThinK, string Name, double DimBudget)
{
    /// <summary>The share of feature dims (keys and values together) the setting keeps for heads of width headDim.</summary>
    public double FeatureShare(int headDim) => Projection?.KeptFraction ?? ThinK?.FeatureShare(headDim) ?? 1;
}
