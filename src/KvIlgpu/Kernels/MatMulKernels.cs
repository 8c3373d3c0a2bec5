using ILGPU;

namespace KvIlgpu.Kernels;

/// <summary>y[r, n] = sum_k x[r, k] * w[n, k] for weights stored in any precision.</summary>
internal static class MatMulKernels
{
    /// <summary>Matrix-vector (and few-row) product: one warp per weight row, lanes striding over k so reads
    /// coalesce; the weight row is reused for every one of the rows activation rows.</summary>
    public static void Gemv<T, TDecoder>(ArrayView<float> x, ArrayView<T> w, ArrayView<float> y, int rows, int n, int k)
        where T : unmanaged where TDecoder : struct, IWeightDecoder<T>
    {
        var decoder = default(TDecoder);
        for (int j = WarpReduce.GlobalWarp; j < n; j += WarpReduce.WarpCount)
        {
            long wRow = (long)j * k;
            for (int r = 0; r < rows; r++)
            {
                float sum = 0;
                long xRow = (long)r * k;
                for (int i = Warp.LaneIdx; i < k; i += Warp.WarpSize)
                    sum += x[xRow + i] * decoder.Decode(w, wRow + i);
                sum = WarpReduce.Sum(sum);
                if (Warp.LaneIdx == 0) y[(long)r * n + j] = sum;
            }
        }
    }

    /// <summary>Matrix product with one thread per output element and no warp shuffles: the right shape for ILGPU's
    /// CPU accelerator, where every shuffle is a barrier between simulated threads.</summary>
    public static void GemvThreadPerOutput<T, TDecoder>(ArrayView<float> x, ArrayView<T> w, ArrayView<float> y, int rows, int n, int k)
        where T : unmanaged where TDecoder : struct, IWeightDecoder<T>
    {
        var decoder = default(TDecoder);
        for (int idx = GridStride.Start; idx < rows * n; idx += GridStride.Step)
        {
            int r = idx / n, j = idx % n;
            long xRow = (long)r * k, wRow = (long)j * k;
            float sum = 0;
            for (int i = 0; i < k; i++) sum += x[xRow + i] * decoder.Decode(w, wRow + i);
            y[(long)r * n + j] = sum;
        }
    }

    /// <summary>The largest tile side a group may use (shared memory is sized for it).</summary>
    public const int MaxTile = 16;

    /// <summary>Tiled matrix-matrix product for prefill: each group owns a tile x tile block of y and walks k in
    /// tile-wide steps through shared memory, so each element of x and w is read from global memory once per tile.
    /// The group has tile*tile threads; groups stride over the output tiles.</summary>
    public static void TiledGemm<T, TDecoder>(ArrayView<float> x, ArrayView<T> w, ArrayView<float> y, int rows, int n, int k, int tile)
        where T : unmanaged where TDecoder : struct, IWeightDecoder<T>
    {
        var decoder = default(TDecoder);
        var xs = SharedMemory.Allocate1D<float>(MaxTile * MaxTile);
        var ws = SharedMemory.Allocate1D<float>(MaxTile * MaxTile);
        int ty = Group.IdxX / tile, tx = Group.IdxX % tile;
        int tilesM = (rows + tile - 1) / tile, tilesN = (n + tile - 1) / tile;
        for (int t = Grid.IdxX; t < tilesM * tilesN; t += Grid.DimX)
        {
            int m0 = t / tilesN * tile, n0 = t % tilesN * tile;
            float acc = 0;
            for (int k0 = 0; k0 < k; k0 += tile)
            {
                int kk = k0 + tx;
                xs[ty * tile + tx] = m0 + ty < rows && kk < k ? x[(long)(m0 + ty) * k + kk] : 0f;
                ws[ty * tile + tx] = n0 + ty < n && kk < k ? decoder.Decode(w, (long)(n0 + ty) * k + kk) : 0f;
                Group.Barrier();
                for (int i = 0; i < tile; i++) acc += xs[ty * tile + i] * ws[tx * tile + i];
                Group.Barrier();
            }
            if (m0 + ty < rows && n0 + tx < n) y[(long)(m0 + ty) * n + n0 + tx] = acc;
        }
    }

    // Backward of y = x w^T (training). One thread per output element, accumulating (+=) so gradients add up over
    // uses of a weight and over micro-batches. Each output is owned by one thread: no atomics, deterministic.

    /// <summary>dx[m, k] += dy[m, n] w[n, k].</summary>
    public static void MatMulInputGrad(ArrayView<float> dy, ArrayView<float> w, ArrayView<float> dx, int m, int k, int n)
    {
        for (int idx = GridStride.Start; idx < m * k; idx += GridStride.Step)
        {
            int r = idx / k, c = idx % k;
            float sum = 0;
            for (int j = 0; j < n; j++) sum += dy[(long)r * n + j] * w[(long)j * k + c];
            dx[idx] += sum;
        }
    }

    /// <summary>dw[n, k] += dy[m, n]^T x[m, k].</summary>
    public static void MatMulWeightGrad(ArrayView<float> dy, ArrayView<float> x, ArrayView<float> dw, int m, int k, int n)
    {
        for (int idx = GridStride.Start; idx < n * k; idx += GridStride.Step)
        {
            int j = idx / k, c = idx % k;
            float sum = 0;
            for (int r = 0; r < m; r++) sum += dy[(long)r * n + j] * x[(long)r * k + c];
            dw[idx] += sum;
        }
    }
}
