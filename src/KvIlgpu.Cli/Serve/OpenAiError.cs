using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace KvIlgpu.Cli.Serve;

/// <summary>A request the server refuses, in OpenAI's error shape: <c>{"error": {"message", "type", "param", "code"}}</c>
/// with its HTTP status.</summary>
internal sealed class OpenAiError(int status, string message, string? param = null, string type = "invalid_request_error")
    : Exception(message)
{
    public int Status { get; } = status;
    public string? Param { get; } = param;
    public string Type { get; } = type;

    /// <summary>Writes the error as the response (status, JSON body, and Retry-After for 429 and 503).</summary>
    public Task WriteAsync(HttpContext context)
    {
        context.Response.StatusCode = Status;
        if (Status is 429 or 503) context.Response.Headers.RetryAfter = "1";
        context.Response.ContentType = "application/json";
        return context.Response.WriteAsync(JsonSerializer.Serialize(new
        {
            error = new { message = Message, type = Type, param = Param, code = (string?)null },
        }));
    }
}
