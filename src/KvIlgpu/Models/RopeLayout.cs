namespace KvIlgpu.Models;

/// <summary>How RoPE pairs up the features of a head.</summary>
public enum RopeLayout
{
    /// <summary>Pairs (2i, 2i+1) rotate together: llama2.c and GGUF "llama" checkpoints.</summary>
    InterleavedPairs,
    /// <summary>Pairs (i, i + d/2) rotate together ("rotate_half"): Hugging Face checkpoints.</summary>
    HalfSplit,
}
