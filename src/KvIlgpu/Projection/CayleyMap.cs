using MathNet.Numerics.LinearAlgebra;

namespace KvIlgpu.Projection;

/// <summary>The Cayley transform that keeps a trained basis orthogonal: a free matrix X gives the skew matrix
/// A = X - X^T and the orthogonal C = (I - A/2)^-1 (I + A/2); X = 0 gives C = I, so a basis U0 C(X) starts at U0 (the PCA
/// basis) and stays orthogonal whatever X the optimiser moves to. Matrices are row-major d x d.</summary>
public static class CayleyMap
{
    /// <summary>C(X) and M = (I - A/2)^-1, which the gradient needs.</summary>
    public static (Matrix<double> C, Matrix<double> M) Forward(ReadOnlySpan<float> x, int d)
    {
        var xs = x.ToArray();
        var a = Matrix<double>.Build.Dense(d, d, (i, j) => xs[i * d + j] - xs[j * d + i]);
        var identity = Matrix<double>.Build.DenseIdentity(d);
        var m = (identity - a / 2).Inverse();
        return (m * (identity + a / 2), m);
    }

    /// <summary>dL/dX from dL/dC: with dC = (1/2) M dA (C + I), dL/dA = (1/2) M^T G (C + I)^T, and dL/dX = dL/dA - (dL/dA)^T.
    /// </summary>
    public static Matrix<double> Backward(Matrix<double> c, Matrix<double> m, Matrix<double> gradC)
    {
        var identity = Matrix<double>.Build.DenseIdentity(c.RowCount);
        var gradA = m.Transpose() * gradC * (c + identity).Transpose() / 2;
        return gradA - gradA.Transpose();
    }
}
