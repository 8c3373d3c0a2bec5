namespace KvIlgpu.Training;

/// <summary>A training sequence for <see cref="TrainableLlama.AccumulateBatch"/>: its tokens, how many of the last ones
/// are a task's answer (0 for plain text), and the loss weight of the tokens before the answer (1 trains on all of them;
/// 0 trains on the answer alone).</summary>
internal readonly record struct TrainingSequence(int[] Ids, int AnswerTokens = 0, float PromptWeight = 1f);
