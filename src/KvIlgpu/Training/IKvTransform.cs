using KvIlgpu.Projection;

namespace KvIlgpu.Training;

/// <summary>A differentiable map of each layer's keys (after RoPE) and values before attention, with parameters of its
/// own in the model's parameter set (MatryoshkaKV's projections while they are trained). Forward and Backward may run
/// on several sequences at once; neither changes the transform's state.</summary>
internal interface IKvTransform
{
    /// <summary>The transformed keys or values of one layer, x [t, KvHeads * HeadDim].</summary>
    TrainingTensor Forward(ITrainingOps ops, int layer, KvPart part, TrainingTensor x, int t);

    /// <summary>The gradient with respect to the input x given dOut, the gradient with respect to Forward's output; adds the
    /// parameters' gradients into grads.</summary>
    TrainingTensor Backward(ITrainingOps ops, int layer, KvPart part, TrainingTensor x, TrainingTensor dOut, int t, GradientSet grads);
}
