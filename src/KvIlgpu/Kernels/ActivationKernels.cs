using ILGPU;
using ILGPU.Algorithms;

namespace KvIlgpu.Kernels;

/// <summary>Elementwise kernels: SwiGLU, residual add, bias add.</summary>
public static class ActivationKernels
{
    /// <summary>gate = silu(gate) * up.</summary>
    public static void SwiGlu(ArrayView<float> gate, ArrayView<float> up, int count)
    {
        for (int i = GridStride.Start; i < count; i += GridStride.Step)
        {
            float g = gate[i];
            gate[i] = g / (1f + XMath.Exp(-g)) * up[i];
        }
    }

    /// <summary>x += y.</summary>
    public static void Add(ArrayView<float> x, ArrayView<float> y, int count)
    {
        for (int i = GridStride.Start; i < count; i += GridStride.Step) x[i] += y[i];
    }

    /// <summary>x[r, :] += bias for rows of width bias.Length.</summary>
    public static void AddBias(ArrayView<float> x, ArrayView<float> bias, int rows, int width)
    {
        int total = rows * width;
        for (int i = GridStride.Start; i < total; i += GridStride.Step) x[i] += bias[i % width];
    }
}
