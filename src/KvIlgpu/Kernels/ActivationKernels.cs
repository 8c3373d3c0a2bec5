using ILGPU;
using ILGPU.Algorithms;

namespace KvIlgpu.Kernels;

/// <summary>Elementwise kernels: SwiGLU, residual add, bias add.</summary>
internal static class ActivationKernels
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

    /// <summary>x *= y.</summary>
    public static void Multiply(ArrayView<float> x, ArrayView<float> y, int count)
    {
        for (int i = GridStride.Start; i < count; i += GridStride.Step) x[i] *= y[i];
    }

    /// <summary>x[r, :] += bias for rows of width bias.Length.</summary>
    public static void AddBias(ArrayView<float> x, ArrayView<float> bias, int rows, int width)
    {
        int total = rows * width;
        for (int i = GridStride.Start; i < total; i += GridStride.Step) x[i] += bias[i % width];
    }

    /// <summary>y = silu(gate) * up, keeping gate (training needs it for the backward).</summary>
    public static void SwiGluOut(ArrayView<float> gate, ArrayView<float> up, ArrayView<float> y, int count)
    {
        for (int i = GridStride.Start; i < count; i += GridStride.Step)
        {
            float g = gate[i];
            y[i] = g / (1f + XMath.Exp(-g)) * up[i];
        }
    }

    /// <summary>Backward of SwiGLU: du += dy silu(g); dg += dy u sig(g) (1 + g (1 - sig(g))).</summary>
    public static void SwiGluBackward(ArrayView<float> gate, ArrayView<float> up, ArrayView<float> dy, ArrayView<float> dGate,
        ArrayView<float> dUp, int count)
    {
        for (int i = GridStride.Start; i < count; i += GridStride.Step)
        {
            float g = gate[i];
            float sig = 1f / (1f + XMath.Exp(-g));
            dUp[i] += dy[i] * g * sig;
            dGate[i] += dy[i] * up[i] * sig * (1f + g * (1f - sig));
        }
    }

    /// <summary>y = x + z.</summary>
    public static void Sum(ArrayView<float> x, ArrayView<float> z, ArrayView<float> y, int count)
    {
        for (int i = GridStride.Start; i < count; i += GridStride.Step) y[i] = x[i] + z[i];
    }

    /// <summary>x *= factor[0] (the factor lives on the device, so the launch needs no recompilation per value).</summary>
    public static void Scale(ArrayView<float> x, ArrayView<float> factor, int count)
    {
        for (int i = GridStride.Start; i < count; i += GridStride.Step) x[i] *= factor[0];
    }
}
