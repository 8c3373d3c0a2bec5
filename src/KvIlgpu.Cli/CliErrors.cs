using System.Text.Json;
using KvIlgpu.Models;

namespace KvIlgpu.Cli;

/// <summary>Turns the errors a user can cause (bad files, bad options, too-long prompts) into one clear line on
/// stderr and exit code 1, instead of a stack trace.</summary>
internal static class CliErrors
{
    public static async Task<int> Run(Func<Task<int>> body)
    {
        try { return await body(); }
        catch (Exception e) when (IsUserError(e))
        {
            Console.Error.WriteLine($"error: {Describe(e)}");
            return 1;
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine("cancelled");
            return 130;
        }
    }

    private static bool IsUserError(Exception e) => e is InvalidModelException or FileNotFoundException or DirectoryNotFoundException
        or InvalidDataException or ArgumentException or ContextOverflowException or NotSupportedException or JsonException
        or InvalidOperationException or FormatException or UnauthorizedAccessException or OutOfMemoryException
        or ILGPU.Runtime.AcceleratorException;

    /// <summary>The one line a user sees for an error.</summary>
    public static string Describe(Exception e) => e switch
    {
        ContextOverflowException c => $"the prompt has {c.Needed} tokens but the model's context holds {c.Capacity}",
        ILGPU.Runtime.AcceleratorException => $"device error: {e.Message} (try --device cpu, or a smaller model)",
        OutOfMemoryException => "out of memory while loading or running the model",
        InvalidOptionException => OptionNames.ForUser(e.Message),
        _ => e.Message,
    };
}
