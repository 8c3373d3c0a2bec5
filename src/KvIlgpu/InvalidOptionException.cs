namespace KvIlgpu;

/// <summary>An option of the library (a property of <c>EngineOptions</c>, <c>GenerationOptions</c>,
/// <c>SamplingOptions</c>, <c>CompressionOptions</c>, <c>EvictionBudget</c> or <c>EvaluationOptions</c>) has a value
/// it cannot take. The message names the property as the library spells it; front ends (the CLI names its flags)
/// map <see cref="Option"/> to their own spelling.</summary>
public sealed class InvalidOptionException : ArgumentException
{
    /// <summary>An error about the option named <paramref name="option"/>; the message says what is wrong, naming it.</summary>
    public InvalidOptionException(string option, string message) : base(message, option)
    {
        Option = option;
    }

    /// <summary>The property that has the bad value (for example <c>MaxCacheTokens</c>).</summary>
    public string Option { get; }

    /// <summary>The message alone, without the parameter suffix <see cref="ArgumentException"/> adds.</summary>
    public override string Message => base.Message.Replace($" (Parameter '{Option}')", "", StringComparison.Ordinal);
}
