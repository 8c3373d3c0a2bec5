using KvIlgpu.Chat;

namespace KvIlgpu.Tests.Chat;

/// <summary>Chat renderings against the strings the families' published chat templates produce for a system, user,
/// assistant, user conversation with the generation prompt added (written out by hand from those templates).</summary>
public class ChatTemplateTests
{
    private static readonly (string, string)[] Conversation =
        [("system", "You are brief."), ("user", "Hi"), ("assistant", "Hello."), ("user", "Name a color.")];

    [Fact]
    public void ChatMl_as_Qwen2_and_SmolLM2_publish_it() => Assert.Equal(
        "<|im_start|>system\nYou are brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n" +
        "<|im_start|>user\nName a color.<|im_end|>\n<|im_start|>assistant\n",
        new ChatTemplate(ChatTemplate.Family.ChatMl).Render(Conversation));

    [Fact]
    public void Llama3_headers_and_eot_tokens() => Assert.Equal(
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are brief.<|eot_id|>" +
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>" +
        "<|start_header_id|>user<|end_header_id|>\n\nName a color.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
        new ChatTemplate(ChatTemplate.Family.Llama3).Render(Conversation));

    /// <summary>Mistral's v1 format as its cookbook writes it ("&lt;s&gt; [INST] user message [/INST] assistant message&lt;/s&gt;
    /// [INST] new user message [/INST]", the system prompt prepended to the first user message), BOS left to the encoder.
    /// </summary>
    [Fact]
    public void Mistral_inst_blocks_with_the_system_message_in_the_first_user_turn() => Assert.Equal(
        "[INST] You are brief.\n\nHi [/INST] Hello.</s> [INST] Name a color. [/INST]",
        new ChatTemplate(ChatTemplate.Family.Mistral).Render(Conversation));

    [Theory]
    [InlineData("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>'}}",
        "ChatMl")]
    [InlineData("{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}", "Llama3")]
    [InlineData("{{ bos_token }}{% for message in messages %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% endfor %}",
        "Mistral")]
    [InlineData("{{ messages }}", "Transcript")]
    public void A_template_is_recognised_by_its_marker_tokens(string template, string family) =>
        Assert.Equal(Enum.Parse<ChatTemplate.Family>(family), ChatTemplate.FromTemplate(template).Kind);
}
