using System.Globalization;
using System.Text;

namespace KvIlgpu.Tasks;

/// <summary>The one source of the retrieval tasks' wording and of their random keys, shared by training
/// (<c>SyntheticTasks</c>) and evaluation (<c>Passkey</c>), so a model is asked in eval exactly what it was taught.
/// Pass keys are 5-digit numbers from 10000 to 99998 (the eval harness has drawn from this range since its first
/// run; the default model's training stages drew up to 99999), needle values 4-digit numbers, needle names six
/// lowercase letters.</summary>
internal static class RetrievalTemplates
{
    /// <summary>The passkey sentence, stated once in the filler.</summary>
    public static string PasskeyNeedle(string key) => $" The pass key is {key}. Remember it. {key} is the pass key. ";

    /// <summary>The passkey question at the end of the prompt; the answer follows it.</summary>
    public const string PasskeyQuestion = " What is the pass key? The pass key is";

    /// <summary>One multi-key needle fact.</summary>
    public static string NeedleFact(string name, string value) => $" The value of {name} is {value}. ";

    /// <summary>The multi-key needle question for one name; the answer follows it.</summary>
    public static string NeedleQuestion(string name) => $" What is the value of {name}? The value of {name} is";

    /// <summary>A pass key: one draw of rng.</summary>
    public static string DrawPasskey(Random rng) => rng.Next(10000, 99999).ToString(CultureInfo.InvariantCulture);

    /// <summary>A needle value: one draw of rng.</summary>
    public static string DrawNeedleValue(Random rng) => rng.Next(1000, 10000).ToString(CultureInfo.InvariantCulture);

    /// <summary>A needle name: six draws of rng.</summary>
    public static string DrawNeedleName(Random rng)
    {
        var sb = new StringBuilder(6);
        for (int i = 0; i < 6; i++) sb.Append((char)('a' + rng.Next(26)));
        return sb.ToString();
    }
}
