using KvIlgpu.Tokenization;
using KvIlgpu.Training;

namespace KvIlgpu.Projection;

/// <summary>A calibration prompt of the rank search and the positions whose next-token distributions it compares,
/// [ScoredFrom, ScoredTo): every position for corpus text, or the positions that predict a task's answer, where a
/// retrieval task's whole outcome is decided.</summary>
public sealed record RankSearchPrompt
{
    /// <summary>The prompt's token ids, run from an empty cache.</summary>
    public int[] Tokens { get; }
    /// <summary>The first position scored.</summary>
    public int ScoredFrom { get; }
    /// <summary>One past the last position scored.</summary>
    public int ScoredTo { get; }
    /// <summary>Whether the scored positions predict a task's answer (<see cref="Answer"/>), rather than running text.</summary>
    public bool IsAnswer { get; init; }

    /// <summary>A prompt scored at positions [scoredFrom, scoredTo), a non-empty range within it.</summary>
    public RankSearchPrompt(int[] tokens, int scoredFrom, int scoredTo)
    {
        if (tokens.Length == 0 || scoredFrom < 0 || scoredTo > tokens.Length || scoredFrom >= scoredTo)
            throw new ArgumentException($"scored positions [{scoredFrom}, {scoredTo}) are not a non-empty range of a prompt of " +
                $"{tokens.Length} tokens");
        Tokens = tokens; ScoredFrom = scoredFrom; ScoredTo = scoredTo;
    }

    /// <summary>Every position scored.</summary>
    public static RankSearchPrompt Whole(int[] tokens) => new(tokens, 0, tokens.Length);

    /// <summary>A task whose last answerTokens tokens are its answer: scored at the positions that predict them.</summary>
    public static RankSearchPrompt Answer(int[] tokens, int answerTokens) =>
        new(tokens, tokens.Length - answerTokens - 1, tokens.Length - 1) { IsAnswer = true };

    /// <summary>count synthetic tasks as the trainers draw them (passkey, multi-key needle and copy, 2:1:1, over the
    /// corpus's training documents as filler, half the passkey and needle fillers a few sentences repeated as the
    /// trainers' repeated_filler makes them; lengths log-uniform from length/4 to length tokens), each scored at its
    /// answer. corpusTokens is the calibration text as token ids (a window of it stands in for a task that does not
    /// fit). Deterministic for a seed.</summary>
    public static List<RankSearchPrompt> Tasks(string corpus, ITextTokenizer tokenizer, int[] corpusTokens, int bos, int count,
        int length, int seed = 1)
    {
        var docs = BrownCorpus.TrainingTexts(corpus);
        var config = new TrainingConfig
        {
            SequenceLength = length - 1, TaskFraction = 1, TaskMinLength = Math.Max(16, length / 4), TaskWeights = [2, 1, 1],
            RepeatedFiller = 0.5,
        };
        var rng = new Random(seed);
        return [.. Enumerable.Range(0, count).Select(_ => Trainer.Sample(rng, config, tokenizer, corpusTokens, docs, bos))
            .Select(s => s.AnswerTokens > 0 ? Answer(s.Ids, s.AnswerTokens) : Whole(s.Ids))];
    }
}
