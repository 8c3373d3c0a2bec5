namespace KvIlgpu.Models;

/// <summary>One row of a batched step: Token of sequence slot Sequence at Position, row Offset of the Count rows that
/// sequence feeds in this step.</summary>
internal readonly record struct BatchRow(int Sequence, int Token, int Position, int Count, int Offset);
