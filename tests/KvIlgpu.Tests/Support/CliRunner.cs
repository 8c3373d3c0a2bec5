using System.Diagnostics;

namespace KvIlgpu.Tests.Support;

/// <summary>Runs the real kvilgpu CLI (built beside the tests) as a separate process.</summary>
internal static class CliRunner
{
    public static (int ExitCode, string Stdout, string Stderr) Run(params string[] args) => RunProgram("KvIlgpu.Cli.dll", null, args);

    /// <summary>Runs a program built beside the tests (its dll name), in a working directory of the caller's choice.</summary>
    public static (int ExitCode, string Stdout, string Stderr) RunProgram(string dllName, string? workingDirectory, params string[] args) =>
        RunProgram(dllName, workingDirectory, null, args);

    /// <summary>As above, with environment variables set for the program.</summary>
    public static (int ExitCode, string Stdout, string Stderr) RunProgram(string dllName, string? workingDirectory,
        IReadOnlyDictionary<string, string>? environment, params string[] args)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, dllName);
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (workingDirectory != null) psi.WorkingDirectory = workingDirectory;
        foreach (var (key, value) in environment ?? new Dictionary<string, string>()) psi.Environment[key] = value;
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(300_000)) { p.Kill(true); throw new TimeoutException("kvilgpu did not finish"); }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }
}
