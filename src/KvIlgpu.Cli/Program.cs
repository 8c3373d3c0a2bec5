using System.CommandLine;
using KvIlgpu.Cli;

var root = new RootCommand("kvilgpu: Llama-family inference on ILGPU (CUDA or CPU) with a per-head compressed KV cache")
{
    GenerateCommand.Create(),
    BatchCommand.Create(),
    EvalCommand.Create(),
    TrainCommand.Create(),
    PasskeyCommand.Create(),
    InfoCommand.Create(),
    ConvertCommand.Create(),
    TokenizeCommand.Create(),
    KvProjectionCommand.Create(),
    KvIlgpu.Cli.Serve.ServeCommand.Create(),
};
var parsed = root.Parse(args);
if (parsed.Errors.Count > 0)
{
    // One line per parse error and a pointer to the help, not the whole help text.
    foreach (var error in parsed.Errors) Console.Error.WriteLine($"error: {error.Message}");
    var command = string.Join(' ', parsed.CommandResult.Command.Parents.OfType<Command>().Reverse().Skip(1).Select(c => c.Name)
        .Append(parsed.CommandResult.Command.Name).Where(n => n != root.Name));
    Console.Error.WriteLine($"see 'kvilgpu {command}{(command.Length > 0 ? " " : "")}--help'");
    return 1;
}
return await parsed.InvokeAsync();
