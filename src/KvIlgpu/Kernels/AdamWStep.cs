namespace KvIlgpu.Kernels;

/// <summary>Hyper-parameters of one AdamW step. GradScale applies gradient clipping; C1 and C2 are the bias
/// corrections 1 - beta^step; Decay is 0 for parameters without weight decay.</summary>
internal struct AdamWStep
{
    public float LearningRate, Beta1, Beta2, Epsilon, C1, C2, GradScale, Decay;
}
