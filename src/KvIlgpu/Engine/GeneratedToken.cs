namespace KvIlgpu.Engine;

/// <summary>A token produced by generation, with the text it adds (when the model has a tokenizer).</summary>
public readonly record struct GeneratedToken(int Id, string Text, int Position);
