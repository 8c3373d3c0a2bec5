// The README's IChatClient example: the lines between the readme markers appear there verbatim, and SamplesTests checks
// that and runs this program from the repository root. Usage, from the root: dotnet run --project samples/KvIlgpu.ChatSample
// <readme>
using KvIlgpu.Chat;
using KvIlgpu.Engine;
using Microsoft.Extensions.AI;

using var engine = InferenceEngine.Load("weights/default");
IChatClient chat = new KvIlgpuChatClient(engine, ChatTemplate.ForModel("weights/default"));
var reply = await chat.GetResponseAsync("Hello!", new ChatOptions { MaxOutputTokens = 32, Temperature = 0 });
Console.WriteLine($"{reply.Text}\n[{reply.Usage?.OutputTokenCount} tokens, {reply.FinishReason}]");
// </readme>
