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
    TokenizeCommand.Create(),
};
return await root.Parse(args).InvokeAsync();
