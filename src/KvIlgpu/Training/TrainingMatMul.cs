using System.Buffers;
using KvIlgpu.Compute;

namespace KvIlgpu.Training;

/// <summary>The managed trainer's matrix products, on the inference backend's register blocks
/// (<see cref="SimdMath.Dot3x2(ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{float},
/// ReadOnlySpan{float}, Span{float})"/> outside the wide order, else <see cref="SimdMath.Dot2x2(ReadOnlySpan{float},
/// ReadOnlySpan{float}, ReadOnlySpan{float}, ReadOnlySpan{float})"/>): every product is c (+)= a b^T over contiguous
/// rows, taken a tile of b's rows at a time so the tile stays in cache while every row of a passes it. The forward
/// y = x w^T is one; the backward's dx += dy w is dy (w^T)^T and dw += dy^T x is (dy^T) (x^T)^T, the transposes made once
/// per call. Single-threaded: the managed trainer runs a batch's sequences in parallel. <see cref="ForwardBackward"/>
/// keeps the plain loops these are tested against.</summary>
internal static class TrainingMatMul
{
    /// <summary>y = x w^T: x [m, k], w [n, k], y [m, n].</summary>
    public static void Forward(ReadOnlySpan<float> x, ReadOnlySpan<float> w, Span<float> y, int m, int k, int n) =>
        Product(x, w, y, m, n, k, accumulate: false);

    /// <summary>dx += dy w and dw += dy^T x (either may be empty: not wanted).</summary>
    public static void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> dy, Span<float> dx,
        Span<float> dw, int m, int k, int n)
    {
        var pool = ArrayPool<float>.Shared;
        if (!dx.IsEmpty)
        {
            var wT = pool.Rent(n * k);
            Transpose(w, n, k, wT);
            Product(dy, wT.AsSpan(0, n * k), dx, m, k, n, accumulate: true);
            pool.Return(wT);
        }
        if (!dw.IsEmpty)
        {
            var dyT = pool.Rent(m * n);
            var xT = pool.Rent(m * k);
            Transpose(dy, m, n, dyT);
            Transpose(x, m, k, xT);
            Product(dyT.AsSpan(0, m * n), xT.AsSpan(0, m * k), dw, n, k, m, accumulate: true);
            pool.Return(dyT);
            pool.Return(xT);
        }
    }

    /// <summary>c (+)= a b^T: a [rows, length], b [cols, length], c [rows, cols].</summary>
    private static void Product(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, int rows, int cols, int length,
        bool accumulate)
    {
        // A tile of b's rows of about 64 KB (an even count), for every row of a.
        int tile = Math.Max(2, 16384 / Math.Max(1, length) & ~1);
        bool three = SimdMath.F32ThreeRowBlocks;
        Span<float> six = stackalloc float[6];
        for (int j0 = 0; j0 < cols; j0 += tile)
        {
            int j1 = Math.Min(cols, j0 + tile), pairsEnd = j0 + ((j1 - j0) & ~1);
            int r = 0;
            for (; three && r + 3 <= rows; r += 3)
            {
                var a0 = a.Slice(r * length, length);
                var a1 = a.Slice((r + 1) * length, length);
                var a2 = a.Slice((r + 2) * length, length);
                for (int j = j0; j < pairsEnd; j += 2)
                {
                    SimdMath.Dot3x2(a0, a1, a2, b.Slice(j * length, length), b.Slice((j + 1) * length, length), six);
                    PutBlock(c, r, j, cols, six, accumulate);
                }
                for (int j = pairsEnd; j < j1; j++)
                    for (int i = 0; i < 3; i++) Put(c, (r + i) * cols + j, RowDot(a, b, r + i, j, length), accumulate);
            }
            for (; r + 2 <= rows; r += 2)
            {
                var a0 = a.Slice(r * length, length);
                var a1 = a.Slice((r + 1) * length, length);
                for (int j = j0; j < pairsEnd; j += 2)
                {
                    var (s00, s01, s10, s11) = SimdMath.Dot2x2(a0, a1, b.Slice(j * length, length), b.Slice((j + 1) * length, length));
                    Put(c, r * cols + j, s00, accumulate); Put(c, r * cols + j + 1, s01, accumulate);
                    Put(c, (r + 1) * cols + j, s10, accumulate); Put(c, (r + 1) * cols + j + 1, s11, accumulate);
                }
                for (int j = pairsEnd; j < j1; j++)
                    for (int i = 0; i < 2; i++) Put(c, (r + i) * cols + j, RowDot(a, b, r + i, j, length), accumulate);
            }
            for (; r < rows; r++)
                for (int j = j0; j < j1; j++) Put(c, r * cols + j, RowDot(a, b, r, j, length), accumulate);
        }
    }

    private static float RowDot(ReadOnlySpan<float> a, ReadOnlySpan<float> b, int row, int col, int length) =>
        SimdMath.Dot(a.Slice(row * length, length), b.Slice(col * length, length));

    /// <summary>A three-by-two block (Dot3x2's order: row r's two, then row r + 1's, then row r + 2's) into c at (r, j).</summary>
    internal static void PutBlock(Span<float> c, int r, int j, int cols, ReadOnlySpan<float> six, bool accumulate)
    {
        for (int i = 0; i < 3; i++)
        {
            Put(c, (r + i) * cols + j, six[2 * i], accumulate);
            Put(c, (r + i) * cols + j + 1, six[2 * i + 1], accumulate);
        }
    }

    /// <summary>c[at] = value, or += where accumulating.</summary>
    internal static void Put(Span<float> c, int at, float value, bool accumulate)
    {
        if (accumulate) c[at] += value; else c[at] = value;
    }

    /// <summary>dst [cols, rows] = src [rows, cols]^T, in 32 x 32 tiles.</summary>
    internal static void Transpose(ReadOnlySpan<float> src, int rows, int cols, float[] dst)
    {
        const int Tile = 32;
        for (int r0 = 0; r0 < rows; r0 += Tile)
            for (int c0 = 0; c0 < cols; c0 += Tile)
            {
                int r1 = Math.Min(rows, r0 + Tile), c1 = Math.Min(cols, c0 + Tile);
                for (int r = r0; r < r1; r++)
                    for (int c = c0; c < c1; c++) dst[c * rows + r] = src[r * cols + c];
            }
    }
}
