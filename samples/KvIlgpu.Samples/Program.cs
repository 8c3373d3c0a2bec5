// The README's library example: the lines between the readme markers appear there verbatim, and SamplesTests checks
// that and runs this program from the repository root. Usage, from the root: dotnet run --project samples/KvIlgpu.Samples
// <readme>
using KvIlgpu.Compression;
using KvIlgpu.Engine;

using var engine = InferenceEngine.Load("weights/default", new EngineOptions(Device: KvIlgpu.Compute.DeviceKind.Auto));
var compression = new CompressionOptions(new EvictionBudget(MaxCacheTokens: 32, ProtectedWindow: 8), Policy: "kvcompress");
var options = new GenerationOptions(MaxTokens: 48, Sampling: new SamplingOptions(Temperature: 0.7f, TopP: 0.9f, Seed: 1),
    Compression: compression);

var handle = engine.Submit("The jury said that", options);
await foreach (var token in handle.Tokens)
    Console.Write(token.Text);
var result = await handle.Completion;
Console.WriteLine($"\n{result.TokenIds.Count} tokens ({result.StopReason}), " +
    $"{result.DecodeTokensPerSecond:F1} tok/s on {engine.DeviceName}");
Console.WriteLine($"KV cache: {result.KvUsage.PeakBytes:N0} bytes at peak, {result.KvUsage.MeanBytes:N0} on average, " +
    $"{result.EvictedKvs:N0} KVs evicted");
// </readme>
