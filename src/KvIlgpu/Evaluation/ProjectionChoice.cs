using KvIlgpu.Projection;

namespace KvIlgpu.Evaluation;

/// <summary>One item of the evaluator's feature axis: no projection (Projection null), or a projection evaluated at
/// every dim budget (uniform ranks), or, with Searched, once at the projection's own (searched) ranks.</summary>
/// <param name="Name">What rows and plots call it ("none", "pca", "trained", ...).</param>
/// <param name="Projection">The projection; null for none.</param>
/// <param name="Searched">Use the projection's own ranks instead of uniform ranks at each dim budget.</param>
public sealed record ProjectionChoice(string Name, KvProjection? Projection = null, bool Searched = false)
{
    /// <summary>No projection: every feature dim kept.</summary>
    public static ProjectionChoice None { get; } = new("none");

    /// <summary>The (projection at its ranks, row name, dim budget) settings this choice is evaluated at.</summary>
    public IEnumerable<(KvProjection? Projection, string Name, double DimBudget)> Settings(IReadOnlyList<double> dimBudgets)
    {
        if (Projection == null) yield return (null, Name, 1);
        else if (Searched) yield return (Projection, Name + ":searched", Projection.KeptFraction);
        else foreach (var b in dimBudgets) yield return (Projection.WithUniformRanks(b), Name, b);
    }
}
