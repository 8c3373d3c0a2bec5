namespace KvIlgpu.Tests.Support;

/// <summary>Finds the team's shared folder (../shared beside the checkout). Tests that need it skip with a
/// stated reason when it is absent, as in a user's own clone.</summary>
internal static class SharedData
{
    public static readonly string? Root = Find();

    private static string? Find()
    {
        var env = Environment.GetEnvironmentVariable("KVILGPU_SHARED");
        if (env != null && Directory.Exists(env)) return env;
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "KvIlgpu.sln")))
            {
                var candidate = Path.Combine(dir.Parent?.FullName ?? "", "shared");
                return Directory.Exists(Path.Combine(candidate, "golden")) ? candidate : null;
            }
        }
        return null;
    }

    public static string Path_(params string[] parts) => Path.Combine([Root!, .. parts]);

    public const string MissingReason = "../shared (golden files) is not beside this checkout";
}

/// <summary>A fact that needs ../shared; skipped with a reason when it is absent.</summary>
internal sealed class SharedFactAttribute : FactAttribute
{
    public SharedFactAttribute() { if (SharedData.Root == null) Skip = SharedData.MissingReason; }
}

internal sealed class SharedTheoryAttribute : TheoryAttribute
{
    public SharedTheoryAttribute() { if (SharedData.Root == null) Skip = SharedData.MissingReason; }
}
