using System.Text;
using System.Text.Json;

namespace KvIlgpu.Chat;

/// <summary>Renders chat messages into a prompt the way a model family's published chat template does, chosen from the
/// template a model's tokenizer_config.json carries (ChatML for Qwen2 and SmolLM2, Llama 3's header tokens, Mistral's
/// [INST] blocks), else a plain transcript. The renderings follow those templates' published strings for the system,
/// user and assistant roles with the generation prompt added; templates are recognised by their marker tokens rather
/// than run as Jinja.</summary>
public sealed class ChatTemplate
{
    /// <summary>The families rendered.</summary>
    public enum Family
    {
        /// <summary>"Role: content" lines, ending in "Assistant:".</summary>
        Transcript,
        /// <summary>ChatML's &lt;|im_start|&gt; turns (Qwen2, SmolLM2).</summary>
        ChatMl,
        /// <summary>Llama 3's header and end-of-turn tokens.</summary>
        Llama3,
        /// <summary>Mistral's v1 [INST] blocks.</summary>
        Mistral,
    }

    /// <summary>The family this template renders.</summary>
    public Family Kind { get; }
    /// <summary>Whether the rendered prompt starts with the model's BOS as text (Llama 3's <c>&lt;|begin_of_text|&gt;</c>,
    /// a special token its byte-level BPE vocabulary encodes as such), so the encoder must not add one. Mistral's
    /// SentencePiece vocabulary reads no special tokens from text, so its rendering leaves <c>&lt;s&gt;</c> to the encoder.
    /// </summary>
    public bool IncludesBos => Kind is Family.Llama3;

    /// <summary>A template of one family.</summary>
    public ChatTemplate(Family kind) => Kind = kind;

    /// <summary>The template of a model folder's tokenizer_config.json, or the plain transcript when there is none or it is
    /// of no family rendered here.</summary>
    public static ChatTemplate ForModel(string modelPath)
    {
        string folder = Directory.Exists(modelPath) ? modelPath : Path.GetDirectoryName(Path.GetFullPath(modelPath)) ?? ".";
        string config = Path.Combine(folder, "tokenizer_config.json");
        if (!File.Exists(config)) return new ChatTemplate(Family.Transcript);
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(config));
            return doc.RootElement.TryGetProperty("chat_template", out var t) && t.ValueKind == JsonValueKind.String
                ? FromTemplate(t.GetString()!) : new ChatTemplate(Family.Transcript);
        }
        catch (JsonException) { return new ChatTemplate(Family.Transcript); }
    }

    /// <summary>The family of a Jinja chat template, by its marker tokens.</summary>
    public static ChatTemplate FromTemplate(string template) => new(
        template.Contains("<|im_start|>", StringComparison.Ordinal) ? Family.ChatMl
        : template.Contains("<|start_header_id|>", StringComparison.Ordinal) ? Family.Llama3
        : template.Contains("[INST]", StringComparison.Ordinal) ? Family.Mistral
        : Family.Transcript);

    /// <summary>The prompt for these (role, content) messages, ending where the assistant's reply begins.</summary>
    public string Render(IReadOnlyList<(string Role, string Content)> messages)
    {
        var sb = new StringBuilder();
        switch (Kind)
        {
            case Family.ChatMl:
                foreach (var (role, content) in messages)
                    sb.Append("<|im_start|>").Append(role).Append('\n').Append(content).Append("<|im_end|>\n");
                sb.Append("<|im_start|>assistant\n");
                break;
            case Family.Llama3:
                sb.Append("<|begin_of_text|>");
                foreach (var (role, content) in messages)
                    sb.Append("<|start_header_id|>").Append(role).Append("<|end_header_id|>\n\n").Append(content.Trim())
                        .Append("<|eot_id|>");
                sb.Append("<|start_header_id|>assistant<|end_header_id|>\n\n");
                break;
            case Family.Mistral:
                // Mistral's v1 instruct format, as mistral-common writes it: "[INST] user [/INST] assistant</s> [INST] user
                // [/INST]", the system message (when there is one) opening the first user turn; BOS comes from the encoder.
                string? system = null;
                foreach (var (role, content) in messages)
                {
                    if (role == "system") { system = content; continue; }
                    if (role == "user")
                    {
                        if (sb.Length > 0) sb.Append(' ');
                        sb.Append("[INST] ").Append(system == null ? content : system + "\n\n" + content).Append(" [/INST]");
                        system = null;
                    }
                    else sb.Append(' ').Append(content).Append("</s>");
                }
                break;
            default:
                foreach (var (role, content) in messages)
                    sb.Append(char.ToUpperInvariant(role[0])).Append(role[1..]).Append(": ").Append(content).Append('\n');
                sb.Append("Assistant:");
                break;
        }
        return sb.ToString();
    }
}
