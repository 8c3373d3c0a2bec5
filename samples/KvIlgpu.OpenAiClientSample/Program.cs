// The README's OpenAI .NET SDK example: the lines between the readme markers appear there verbatim, and SamplesTests
// checks that and runs this program against a server it starts. Usage: start `kvilgpu serve`, then
// dotnet run --project samples/KvIlgpu.OpenAiClientSample
// <readme>
using System.ClientModel;
using OpenAI;
using OpenAI.Chat;

var endpoint = new Uri(Environment.GetEnvironmentVariable("OPENAI_BASE_URL") ?? "http://127.0.0.1:8080/v1");
var client = new ChatClient("default", new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = endpoint });
ChatCompletion reply = await client.CompleteChatAsync([ChatMessage.CreateUserMessage("Hello!")],
    new ChatCompletionOptions { MaxOutputTokenCount = 32, Temperature = 0 });
Console.WriteLine($"{reply.Content[0].Text}\n[{reply.Usage.OutputTokenCount} tokens, {reply.FinishReason}]");
// </readme>
