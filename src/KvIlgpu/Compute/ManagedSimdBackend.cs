using System.Buffers;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using KvIlgpu.Models;

namespace KvIlgpu.Compute;

/// <summary>The fast CPU path: every op in managed code with Vector256/TensorPrimitives, matrix products
/// split across cores. Weights stay in their stored precision and are widened in registers.</summary>
internal sealed class ManagedSimdBackend : IComputeBackend
{
    private sealed class HostBuffer : DeviceBuffer
    {
        public readonly float[] Data;
        public HostBuffer(int length) { Data = new float[length]; Length = length; }
        public override void Dispose() { }
    }

    private sealed class HostWeight : DeviceWeight
    {
        public readonly float[]? F32;
        public readonly ushort[]? Bits16;
        /// <summary>Raw ggml blocks of a quantised weight, and the bytes of one row of them.</summary>
        public readonly byte[]? Blocks;
        public readonly int RowBytes;
        private readonly WeightTensor _tensor;
        public HostWeight(WeightTensor w)
        {
            _tensor = w;
            Rows = w.Rows; Cols = w.Cols; Type = w.Type; F32 = w.F32; Bits16 = w.Bits16; Blocks = w.Blocks;
            if (Blocks != null) RowBytes = (int)Models.Quantization.QuantFormats.RowBytes(Type, Cols);
        }
        public override void Dispose() { }

        /// <summary>x . row (16-bit weights: x in pair order, prescaled as SimdMath.ToPairOrder returned).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public float Dot(ReadOnlySpan<float> x, int row, bool prescaled) => Type switch
        {
            WeightType.F32 => SimdMath.Dot(x, F32.AsSpan(row * Cols, Cols)),
            WeightType.BF16 => SimdMath.Dot(x, Bits16.AsSpan(row * Cols, Cols), bf16: true),
            _ => SimdMath.Dot(x, Bits16.AsSpan(row * Cols, Cols), bf16: false, prescaled),
        };

        /// <summary>An f32 row j against two activation rows at once (bitwise equal to two Dot calls).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public (float, float) Dot2(ReadOnlySpan<float> x0, ReadOnlySpan<float> x1, int row) =>
            SimdMath.Dot2(x0, x1, F32.AsSpan(row * Cols, Cols), default, SimdMath.WeightKind.F32);

        /// <summary>Rows j and j + 1 against two activation rows (bitwise equal to four Dot calls).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public (float, float, float, float) Dot2x2(ReadOnlySpan<float> x0, ReadOnlySpan<float> x1, int row, bool prescaled) =>
            Type switch
            {
                WeightType.F32 => SimdMath.Dot2x2(x0, x1, F32.AsSpan(row * Cols, Cols), F32.AsSpan((row + 1) * Cols, Cols)),
                _ => SimdMath.Dot2x2(x0, x1, Bits16.AsSpan(row * Cols, Cols), Bits16.AsSpan((row + 1) * Cols, Cols),
                    bf16: Type == WeightType.BF16, prescaled),
            };

        /// <summary>Rows j and j + 1 against three activation rows, into dst (x0.wj, x0.wj+1, x1.wj, ...; bitwise equal to
        /// six Dot calls).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Dot3x2(ReadOnlySpan<float> x0, ReadOnlySpan<float> x1, ReadOnlySpan<float> x2, int row, bool prescaled,
            Span<float> dst)
        {
            if (Type == WeightType.F32)
                SimdMath.Dot3x2(x0, x1, x2, F32.AsSpan(row * Cols, Cols), F32.AsSpan((row + 1) * Cols, Cols), dst);
            else
                SimdMath.Dot3x2(x0, x1, x2, Bits16.AsSpan(row * Cols, Cols), Bits16.AsSpan((row + 1) * Cols, Cols),
                    Type == WeightType.BF16, prescaled, dst);
        }

        public void RowToFloat(int row, Span<float> dst) => _tensor.RowToFloat(row, dst);
    }

    private sealed class HostInts : DeviceIntBuffer
    {
        public readonly int[] Data;
        public HostInts(int length) { Data = new int[length]; Length = length; }
        public override void Dispose() { }
    }

    private readonly int _threads;

    public ManagedSimdBackend(int? threads = null) => _threads = Math.Max(1, threads ?? Environment.ProcessorCount);

    public string Name =>
        $"cpu (managed SIMD, {_threads} threads, {(SimdMath.UseVector512 ? "Vector512"
            : System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated ? "Vector256" : "scalar")})";
    public DeviceKind Kind => DeviceKind.Cpu;
    /// <summary>None: the managed backend plans eviction on the host, where its cache already is.</summary>
    public IDeviceEvictionPlanner? EvictionPlanner => null;
    public long MemoryBytes => GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;

    private static float[] D(DeviceBuffer b) => ((HostBuffer)b).Data;
    private static HostWeight W(DeviceWeight w) => (HostWeight)w;

    public DeviceBuffer Allocate(int length) => new HostBuffer(length);
    public DeviceWeight Upload(WeightTensor weight) => new HostWeight(weight);
    public void Write(DeviceBuffer dst, ReadOnlySpan<float> src, int dstOffset = 0) => src.CopyTo(D(dst).AsSpan(dstOffset));
    public void Read(DeviceBuffer src, Span<float> dst, int srcOffset = 0) => D(src).AsSpan(srcOffset, dst.Length).CopyTo(dst);
    public void Copy(DeviceBuffer src, int srcOffset, DeviceBuffer dst, int dstOffset, int count) =>
        D(src).AsSpan(srcOffset, count).CopyTo(D(dst).AsSpan(dstOffset, count));
    public void Synchronize() { }
    public void Dispose() { }

    /// <summary>Runs body over [0, count) split into contiguous ranges, in parallel when the work is large enough (on the
    /// process's spinning workers: see <see cref="SpinningWorkers"/>).</summary>
    private void ForRanges(int count, long workPerItem, Action<int, int> body)
    {
        int parts = (int)Math.Min(_threads, Math.Max(1, count * workPerItem / 16384));
        if (parts <= 1 || count < 2) { body(0, count); return; }
        parts = Math.Min(parts, count);
        SpinningWorkers.For(parts).Run(p => body((int)((long)count * p / parts), (int)((long)count * (p + 1) / parts)));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Embed(DeviceWeight table, ReadOnlySpan<int> tokens, DeviceBuffer output)
    {
        var t = W(table);
        var o = D(output);
        for (int r = 0; r < tokens.Length; r++)
        {
            if ((uint)tokens[r] >= (uint)t.Rows) throw new ArgumentOutOfRangeException(nameof(tokens),
                $"token id {tokens[r]} is outside the vocabulary (0..{t.Rows - 1})");
            t.RowToFloat(tokens[r], o.AsSpan(r * t.Cols, t.Cols));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void RmsNorm(DeviceBuffer x, DeviceWeight weight, DeviceBuffer output, int rows, float eps)
    {
        var xs = D(x); var o = D(output); var w = W(weight).F32!;
        int dim = w.Length;
        for (int r = 0; r < rows; r++)
        {
            var row = xs.AsSpan(r * dim, dim);
            float ss = TensorPrimitives.SumOfSquares(row);
            float scale = 1f / MathF.Sqrt(ss / dim + eps);
            var dst = o.AsSpan(r * dim, dim);
            TensorPrimitives.Multiply(row, scale, dst);
            TensorPrimitives.Multiply(dst, w, dst);
        }
    }

    public void MatMul(DeviceBuffer x, DeviceWeight w, DeviceBuffer output, int rows)
    {
        var xs = D(x); var o = D(output); var wt = W(w);
        int k = wt.Cols;
        if (wt.Blocks != null) { QuantizedMatMul(xs, wt, o, rows); return; }
        float[]? paired = null;
        bool prescaled = false;
        if (wt.Bits16 != null)
        {
            // The 16-bit products take their activation rows in pair order, made here once for every weight row; for f16,
            // prescaled by 2^112 where every value allows it (one test for all rows, so they all agree).
            paired = ArrayPool<float>.Shared.Rent(rows * k);
            bool scale = wt.Type == WeightType.F16 && TensorPrimitives.MaxMagnitude(xs.AsSpan(0, rows * k)) < 32768f;
            for (int r = 0; r < rows; r++)
                prescaled = SimdMath.ToPairOrder(xs.AsSpan(r * k, k), paired.AsSpan(r * k, k), scale);
            xs = paired;
        }
        try { MatMulRows(xs, wt, o, rows, prescaled); }
        finally { if (paired != null) ArrayPool<float>.Shared.Return(paired); }
    }

    /// <summary>One activation row against several weights of one width (decode's q, k and v; its gate and up) as one
    /// split over all their rows: the workers are handed the work once instead of once a matrix, and the activation
    /// is put in each form the weights read (pair order for 16-bit weights, 8-bit codes per block size for quantised
    /// ones) once for all of them. Each output row is the call MatMul makes for it, so the results are bitwise MatMul's.
    /// Several activation rows (prefill, batches) take MatMul per weight, whose tiling is per matrix.</summary>
    public void MatMuls(DeviceBuffer x, ReadOnlySpan<DeviceWeight> weights, ReadOnlySpan<DeviceBuffer> outputs, int rows)
    {
        int count = weights.Length, k = weights.Length > 0 ? weights[0].Cols : 0;
        bool fused = rows == 1 && count > 1;
        for (int i = 0; i < count && fused; i++) fused = weights[i].Cols == k;
        if (!fused)
        {
            for (int i = 0; i < count; i++) MatMul(x, weights[i], outputs[i], rows);
            return;
        }
        var xs = D(x);
        var wts = new HostWeight[count];
        var outs = new float[count][];
        var inputs = new float[count][];
        var prescaled = new bool[count];
        var codes = new QuantizedActivation?[count];
        var first = new int[count + 1];
        float[]? pairedF16 = null, pairedBf16 = null;
        bool f16Prescaled = false, bf16Prescaled = false;
        QuantizedActivation? codes32 = null, codes256 = null;
        try
        {
            for (int i = 0; i < count; i++)
            {
                var wt = wts[i] = W(weights[i]);
                outs[i] = D(outputs[i]);
                first[i + 1] = first[i] + wt.Rows;
                inputs[i] = xs;
                if (wt.Bits16 != null && wt.Type == WeightType.BF16)
                {
                    if (pairedBf16 == null)
                    {
                        pairedBf16 = ArrayPool<float>.Shared.Rent(k);
                        bf16Prescaled = SimdMath.ToPairOrder(xs.AsSpan(0, k), pairedBf16.AsSpan(0, k), false);
                    }
                    inputs[i] = pairedBf16;
                    prescaled[i] = bf16Prescaled;
                }
                else if (wt.Bits16 != null)
                {
                    // As MatMul does: prescaled by 2^112 where every value allows it.
                    if (pairedF16 == null)
                    {
                        pairedF16 = ArrayPool<float>.Shared.Rent(k);
                        f16Prescaled = SimdMath.ToPairOrder(xs.AsSpan(0, k), pairedF16.AsSpan(0, k),
                            TensorPrimitives.MaxMagnitude(xs.AsSpan(0, k)) < 32768f);
                    }
                    inputs[i] = pairedF16;
                    prescaled[i] = f16Prescaled;
                }
                else if (wt.Blocks != null && QuantizedDot.UsesIntegerPath(wt.Type))
                {
                    int block = QuantizedDot.ActivationBlock(wt.Type);
                    ref var shared = ref block == 32 ? ref codes32 : ref codes256;
                    if (shared == null) (shared = new QuantizedActivation(k, block)).Quantize(xs.AsSpan(0, k));
                    codes[i] = shared;
                }
            }
            ForRanges(first[count], k, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
            {
                for (int i = 0; i < count; i++)
                {
                    int from = Math.Max(start, first[i]) - first[i], to = Math.Min(end, first[i + 1]) - first[i];
                    if (from >= to) continue;
                    var wt = wts[i];
                    if (wt.Blocks != null)
                        QuantizedDot.DotRows(wt.Type, wt.Blocks, wt.RowBytes, from, inputs[i].AsSpan(0, k), codes[i],
                            outs[i].AsSpan(from, to - from));
                    else
                        for (int j = from; j < to; j++) outs[i][j] = wt.Dot(inputs[i].AsSpan(0, k), j, prescaled[i]);
                }
            });
        }
        finally
        {
            if (pairedF16 != null) ArrayPool<float>.Shared.Return(pairedF16);
            if (pairedBf16 != null) ArrayPool<float>.Shared.Return(pairedBf16);
        }
    }

    private void MatMulRows(float[] xs, HostWeight wt, float[] o, int rows, bool prescaled)
    {
        int n = wt.Rows, k = wt.Cols;
        if (wt.F32 != null && rows >= 4 && SimdMath.F32ThreeRowBlocks)
        {
            F32MatMulRows4x3(xs, wt.F32, o, rows, n, k);
            return;
        }
        // A tile of weight rows stays in L1 while every activation row passes over it, two weight rows at a time against two
        // activation rows, so each pair of activation rows is read from L2 once per tile, not once per weight-row pair
        // (every product bitwise what Dot gives, so batching changes no number).
        int tile = Math.Max(2, Math.Min(16, 8192 / Math.Max(1, k)) & ~1);
        // Three activation rows by two weight rows where the registers hold the block: f32 in the Vector256 order (12
        // accumulators; with four or more activation rows F32MatMulRows4x3 took them above) everywhere, 16-bit weights
        // (24) with AVX-512's 32 registers.
        bool three = wt.Type == WeightType.F32 ? SimdMath.F32ThreeRowBlocks : SimdMath.ThreeRowBlocks;
        // 16-bit weights in the Vector256 order: the tile is widened to f32 once, not once per block of activation rows,
        // and met three activation rows at a time (SimdMath.Dot3x2Widened, 12 accumulators per pass, as f32's block),
        // then two. f16's widening took more instructions than the multiply-adds (widened two-by-two: 64-row products
        // 1.3x faster; three-by-two on top: 1.4x more). bf16 widened as it went while its block was two-by-two (reading
        // the widened tile back cost more than two instructions saved); with three-by-two its widened tile measured
        // about 1.1x faster from 32 activation rows, but slower for the few rows of a batched decode step (4 rows:
        // 4.5-6.8 against 2.6-4.4 ms a step's matrices; 16 rows: 14.5-17.9 against 13.4-14.3), so bf16 widens its tiles
        // for prefill chunks only. The products are the same, bit for bit.
        bool bf16 = wt.Type == WeightType.BF16;
        bool widen = (wt.Type == WeightType.F16 || bf16) && !three && rows >= (bf16 ? 32 : 4) && SimdMath.WidensTiles(k);
        ForRanges(n, (long)k * rows, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
        {
            int j = start;
            Span<float> block = stackalloc float[6]; // a three-by-two block's products
            var widened = widen ? ArrayPool<float>.Shared.Rent(tile * k) : null;
            if (rows > 1)
            {
                int pairsEnd = start + ((end - start) & ~1);
                for (int j0 = start; j0 < pairsEnd; j0 += tile)
                {
                    int j1 = Math.Min(j0 + tile, pairsEnd);
                    int r = 0;
                    if (widened != null)
                    {
                        for (int jj = j0; jj < j1; jj++)
                            SimdMath.WidenPairs(wt.Bits16.AsSpan(jj * k, k), widened.AsSpan((jj - j0) * k, k), bf16, prescaled);
                        for (; r + 2 < rows; r += 3)
                            for (int jj = j0; jj < j1; jj += 2)
                            {
                                SimdMath.Dot3x2Widened(xs.AsSpan(r * k, k), xs.AsSpan((r + 1) * k, k), xs.AsSpan((r + 2) * k, k),
                                    widened.AsSpan((jj - j0) * k, k), widened.AsSpan((jj + 1 - j0) * k, k),
                                    wt.Bits16.AsSpan(jj * k, k), wt.Bits16.AsSpan((jj + 1) * k, k), bf16, block);
                                Store3x2(block, o, n, r, jj);
                            }
                        for (; r + 1 < rows; r += 2)
                            for (int jj = j0; jj < j1; jj += 2)
                                (o[r * n + jj], o[r * n + jj + 1], o[(r + 1) * n + jj], o[(r + 1) * n + jj + 1]) =
                                    SimdMath.Dot2x2Widened(xs.AsSpan(r * k, k), xs.AsSpan((r + 1) * k, k),
                                        widened.AsSpan((jj - j0) * k, k), widened.AsSpan((jj + 1 - j0) * k, k),
                                        wt.Bits16.AsSpan(jj * k, k), wt.Bits16.AsSpan((jj + 1) * k, k), bf16);
                    }
                    if (three)
                    {
                        for (; r + 2 < rows; r += 3)
                            for (int jj = j0; jj < j1; jj += 2)
                            {
                                wt.Dot3x2(xs.AsSpan(r * k, k), xs.AsSpan((r + 1) * k, k), xs.AsSpan((r + 2) * k, k), jj,
                                    prescaled, block);
                                Store3x2(block, o, n, r, jj);
                            }
                    }
                    for (; r + 1 < rows; r += 2)
                        for (int jj = j0; jj < j1; jj += 2)
                            (o[r * n + jj], o[r * n + jj + 1], o[(r + 1) * n + jj], o[(r + 1) * n + jj + 1]) =
                                wt.Dot2x2(xs.AsSpan(r * k, k), xs.AsSpan((r + 1) * k, k), jj, prescaled);
                    if (r < rows)
                        for (int jj = j0; jj < j1; jj++) o[r * n + jj] = wt.Dot(xs.AsSpan(r * k, k), jj, prescaled);
                }
                j = pairsEnd;
            }
            for (; j < end; j++)
            {
                int r = 0;
                if (wt.Bits16 == null)
                    for (; r + 1 < rows; r += 2)
                        (o[r * n + j], o[(r + 1) * n + j]) = wt.Dot2(xs.AsSpan(r * k, k), xs.AsSpan((r + 1) * k, k), j);
                for (; r < rows; r++) o[r * n + j] = wt.Dot(xs.AsSpan(r * k, k), j, prescaled);
            }
            if (widened != null) ArrayPool<float>.Shared.Return(widened);
        });
    }

    /// <summary>A three-by-two block's products (x_r.w_j, x_r.w_j+1, x_r+1.w_j, ...) into the output rows r to r + 2,
    /// columns j and j + 1 (n columns a row).</summary>
    private static void Store3x2(ReadOnlySpan<float> block, float[] o, int n, int r, int j)
    {
        for (int q = 0; q < 3; q++)
        {
            o[(r + q) * n + j] = block[2 * q];
            o[(r + q) * n + j + 1] = block[2 * q + 1];
        }
    }

    /// <summary>y = x w^T for f32 weights and at least four activation rows (in the Vector256 order, so bitwise what the
    /// other paths give): blocks of four activation rows by three weight rows (<see cref="F32Products.Dot4x3Wide"/> with
    /// AVX-512, <see cref="F32Products.Dot4x3"/> in two passes elsewhere: 64-row products about 1.2x faster than the
    /// three-by-two block on AVX2), a tile of 3 to 15 weight rows (about 32 KB where the rows are short enough) kept in L1
    /// while every block of activation rows passes over it; the one to three activation rows left over meet the tile's
    /// rows one at a time.</summary>
    private void F32MatMulRows4x3(float[] xs, float[] w, float[] o, int rows, int n, int k)
    {
        int tile = 3 * Math.Clamp(8192 / Math.Max(1, 3 * k), 1, 5);
        ForRanges(n, (long)k * rows, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
        {
            Span<float> block = stackalloc float[12];
            int blocksEnd = start + (end - start) / 3 * 3;
            for (int j0 = start; j0 < blocksEnd; j0 += tile)
            {
                int j1 = Math.Min(j0 + tile, blocksEnd), r = 0;
                for (; r + 3 < rows; r += 4)
                    for (int j = j0; j < j1; j += 3)
                    {
                        if (F32Products.Wide4x3) F32Products.Dot4x3Wide(xs.AsSpan(r * k, 4 * k), w.AsSpan(j * k, 3 * k), k, block);
                        else F32Products.Dot4x3(xs.AsSpan(r * k, 4 * k), w.AsSpan(j * k, 3 * k), k, block);
                        for (int q = 0; q < 4; q++)
                        {
                            int at = (r + q) * n + j;
                            o[at] = block[3 * q]; o[at + 1] = block[3 * q + 1]; o[at + 2] = block[3 * q + 2];
                        }
                    }
                for (; r < rows; r++)
                    for (int j = j0; j < j1; j++) o[r * n + j] = F32Products.Dot(xs.AsSpan(r * k, k), w.AsSpan(j * k, k));
            }
            for (int r = 0; r < rows; r++)
                for (int j = blocksEnd; j < end; j++) o[r * n + j] = F32Products.Dot(xs.AsSpan(r * k, k), w.AsSpan(j * k, k));
        });
    }

    /// <summary>y = x w^T for a quantised w: the activation rows are quantised once (where the type's integer path
    /// wants them so), then each weight row meets every activation row while it is in cache.</summary>
    private void QuantizedMatMul(float[] xs, HostWeight wt, float[] o, int rows)
    {
        int n = wt.Rows, k = wt.Cols;
        QuantizedActivation[]? xq = null;
        if (QuantizedDot.UsesIntegerPath(wt.Type))
        {
            xq = new QuantizedActivation[rows];
            for (int r = 0; r < rows; r++)
                (xq[r] = new QuantizedActivation(k, QuantizedDot.ActivationBlock(wt.Type))).Quantize(xs.AsSpan(r * k, k));
        }
        // Tiles of 16 weight rows (a few KB) stay in L1 while every activation row passes over them, four or two activation
        // rows a time where the type has a kernel that unpacks each block once for them all.
        const int Tile = 16;
        bool twoRows = xq != null && QuantizedDot.HasTwoRowKernel(wt.Type);
        bool fourRows = xq != null && QuantizedDot.HasFourRowKernel(wt.Type);
        ForRanges(n, (long)k * rows / 4, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
        {
            for (int j0 = start; j0 < end; j0 += Tile)
            {
                int count = Math.Min(Tile, end - j0), r = 0;
                if (fourRows)
                    for (; r + 3 < rows; r += 4)
                        QuantizedDot.DotRows4(wt.Type, wt.Blocks, wt.RowBytes, j0, xq![r], xq[r + 1], xq[r + 2], xq[r + 3],
                            o.AsSpan(r * n + j0, count), o.AsSpan((r + 1) * n + j0, count), o.AsSpan((r + 2) * n + j0, count),
                            o.AsSpan((r + 3) * n + j0, count));
                if (twoRows)
                    for (; r + 1 < rows; r += 2)
                        QuantizedDot.DotRows2(wt.Type, wt.Blocks, wt.RowBytes, j0, xq![r], xq[r + 1], o.AsSpan(r * n + j0, count),
                            o.AsSpan((r + 1) * n + j0, count));
                for (; r < rows; r++)
                    QuantizedDot.DotRows(wt.Type, wt.Blocks, wt.RowBytes, j0, xs.AsSpan(r * k, k), xq?[r], o.AsSpan(r * n + j0, count));
            }
        });
    }

    public void AddBias(DeviceBuffer x, DeviceWeight bias, int rows)
    {
        var xs = D(x); var b = W(bias).F32!;
        for (int r = 0; r < rows; r++) TensorPrimitives.Add(xs.AsSpan(r * b.Length, b.Length), b, xs.AsSpan(r * b.Length, b.Length));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Rope(DeviceBuffer x, int rows, int heads, int headDim, ReadOnlySpan<int> positions, RopeLayout layout, DeviceRope rope)
    {
        var xs = D(x); var cos = D(rope.Cos); var sin = D(rope.Sin);
        int half = headDim / 2;
        for (int r = 0; r < rows; r++)
        {
            int tableRow = positions[r] * rope.HalfDim;
            for (int h = 0; h < heads; h++)
            {
                int b = (r * heads + h) * headDim;
                for (int i = 0; i < half; i++)
                {
                    float c = cos[tableRow + i], s = sin[tableRow + i];
                    int i0 = layout == RopeLayout.InterleavedPairs ? b + 2 * i : b + i;
                    int i1 = layout == RopeLayout.InterleavedPairs ? i0 + 1 : i0 + half;
                    float v0 = xs[i0], v1 = xs[i1];
                    xs[i0] = v0 * c - v1 * s;
                    xs[i1] = v0 * s + v1 * c;
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void SwiGlu(DeviceBuffer gate, DeviceBuffer up, int count)
    {
        var g = D(gate); var u = D(up);
        // silu(g) * u = g * sigmoid(g) * u, in chunks that keep their sigmoids on the stack (a prefill's gate is megabytes:
        // a temporary that size is a fresh large-object allocation, and page faults, every call), split over the workers.
        const int Chunk = 2048;
        ForRanges((count + Chunk - 1) / Chunk, Chunk * 8, (start, end) =>
        {
            Span<float> tmp = stackalloc float[Chunk];
            for (int c = start; c < end; c++)
            {
                int at = c * Chunk, len = Math.Min(Chunk, count - at);
                var gc = g.AsSpan(at, len);
                var t = tmp[..len];
                TensorPrimitives.Sigmoid(gc, t);
                TensorPrimitives.Multiply(gc, t, gc);
                TensorPrimitives.Multiply(gc, u.AsSpan(at, len), gc);
            }
        });
    }

    public void Add(DeviceBuffer x, DeviceBuffer y, int count) =>
        TensorPrimitives.Add(D(x).AsSpan(0, count), D(y).AsSpan(0, count), D(x).AsSpan(0, count));
    public void Multiply(DeviceBuffer x, DeviceBuffer y, int yOffset, int count) =>
        TensorPrimitives.Multiply(D(x).AsSpan(0, count), D(y).AsSpan(yOffset, count), D(x).AsSpan(0, count));

    public void ProjectHeads(DeviceBuffer x, DeviceBuffer output, int rows, int heads, int headDim, DeviceBuffer maps,
        DeviceBuffer subtract, DeviceBuffer add)
    {
        var xs = D(x); var o = D(output); var m = D(maps); var mu = D(subtract); var plus = D(add);
        ForRanges(rows * heads, (long)headDim * headDim, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
        {
            var centred = new float[headDim];
            for (int rh = start; rh < end; rh++)
            {
                int h = rh % heads;
                var mean = mu.AsSpan(h * headDim, headDim);
                TensorPrimitives.Subtract(xs.AsSpan(rh * headDim, headDim), mean, centred);
                for (int i = 0; i < headDim; i++)
                    o[rh * headDim + i] = TensorPrimitives.Dot(m.AsSpan((h * headDim + i) * headDim, headDim), centred)
                        + plus[h * headDim + i];
            }
        });
    }

    public void Attention(DeviceBuffer q, DeviceBuffer keyCache, DeviceBuffer valueCache, DeviceBuffer output, AttentionShape s)
    {
        var qs = D(q); var ks = D(keyCache); var vs = D(valueCache); var o = D(output);
        int d = s.HeadDim, group = s.Heads / s.KvHeads;
        float scale = 1f / MathF.Sqrt(d);
        if (DenseHeadAttention.Blocked(d))
        {
            // Per KV head, its queries in row order (each row's group of query heads together), four at a time; the blocks
            // are dealt out front and back alternately, so each thread's contiguous range holds short and long rows alike.
            int perHead = s.Rows * group, blocks = (perHead + 3) / 4, items = s.KvHeads * blocks;
            ForRanges(items, (long)(s.StartPosition + s.Rows) * d * 8,
                [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
            {
                var scores = new float[4 * (s.StartPosition + s.Rows)];
                Span<int> queryAt = stackalloc int[4], lens = stackalloc int[4];
                for (int item = start; item < end; item++)
                {
                    int j = item % 2 == 0 ? item / 2 : items - 1 - item / 2;
                    int kvh = j / blocks, first = (j % blocks) * 4, count = Math.Min(4, perHead - first);
                    for (int i = 0; i < count; i++)
                    {
                        int r = (first + i) / group, h = kvh * group + (first + i) % group;
                        queryAt[i] = r * s.QDim + h * d;
                        lens[i] = s.StartPosition + r + 1;
                    }
                    int longest = s.StartPosition + (first + count - 1) / group + 1;
                    int at = s.CacheOffset + kvh * d, span = (longest - 1) * s.KvDim + d;
                    if (count == 1)
                        DenseHeadAttention.Attend(qs.AsSpan(queryAt[0], d), ks.AsSpan(at, span), vs.AsSpan(at, span), s.KvDim,
                            longest, scale, scores, o.AsSpan(queryAt[0], d));
                    else
                        DenseHeadAttention.AttendFour(qs, queryAt, lens, count, ks.AsSpan(at, span), vs.AsSpan(at, span), s.KvDim, d,
                            scale, scores, o, queryAt);
                }
            });
            return;
        }
        ForRanges(s.Rows * s.Heads, (long)(s.StartPosition + s.Rows) * d * 2,
            [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
        {
            var scores = new float[s.StartPosition + s.Rows];
            for (int item = start; item < end; item++)
            {
                int r = item / s.Heads, h = item % s.Heads, kvh = h / group;
                int len = s.StartPosition + r + 1;
                int first = s.CacheOffset + kvh * d, span = (len - 1) * s.KvDim + d;
                DenseHeadAttention.Attend(qs.AsSpan(r * s.QDim + h * d, d), ks.AsSpan(first, span), vs.AsSpan(first, span), s.KvDim,
                    len, scale, scores, o.AsSpan(r * s.QDim + h * d, d));
            }
        });
    }

    private static int[] I(DeviceIntBuffer b) => ((HostInts)b).Data;
    public DeviceIntBuffer AllocateInts(int length) => new HostInts(length);
    public void WriteInts(DeviceIntBuffer dst, ReadOnlySpan<int> src, int dstOffset = 0) => src.CopyTo(I(dst).AsSpan(dstOffset));
    public void ReadInts(DeviceIntBuffer src, Span<int> dst, int srcOffset = 0) => I(src).AsSpan(srcOffset, dst.Length).CopyTo(dst);

    private static int SlotOf(in Kernels.PagedLayout p, int[] tables, int head, Kernels.HeadShape shape, int index) =>
        (int)p.Slot(tables[p.TableIndex(head, index, shape)], index, shape);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void PagedWrite(DeviceBuffer k, DeviceBuffer v, PagedKvBuffers cache, DeviceIntBuffer rowInfo, int rows, int layer)
    {
        var p = cache.Layout;
        var ks = D(k); var vs = D(v); var pool = I(cache.Blocks); var scales = D(cache.Scales);
        var pos = I(cache.Positions); var metric = D(cache.Metric); var tables = I(cache.Tables);
        var lengths = I(cache.Lengths); var info = I(rowInfo);
        int d = p.HeadDim;
        for (int r = 0; r < rows; r++)
            for (int h = 0; h < p.KvHeads; h++)
            {
                int head = p.HeadIndex(info[4 * r], layer, h);
                var shape = p.Shape(tables, head);
                int slot = SlotOf(p, tables, head, shape,
                    Kernels.PagedLayout.AppendIndex(lengths[head], info[4 * r + 1], info[4 * r + 2]));
                float keyScale = Kernels.KvCodec.StoreRow(ks.AsSpan((r * p.KvHeads + h) * d, shape.KeyWidth),
                    pool.AsSpan((int)p.KeyOffset(slot, shape), shape.KeyWords), p.Storage);
                float valueScale = Kernels.KvCodec.StoreRow(vs.AsSpan((r * p.KvHeads + h) * d, shape.ValueWidth),
                    pool.AsSpan((int)p.ValueOffset(slot, shape), shape.ValueWords), p.Storage);
                if (p.HasScales) { scales[2 * slot] = keyScale; scales[2 * slot + 1] = valueScale; }
                pos[slot] = info[4 * r + 3];
                metric[slot] = 0f;
            }
    }

    /// <summary>Paged attention one (row, KV head) at a time: through <see cref="GroupedPagedAttention"/> (rows widened in
    /// registers, for up to four query heads at once) where it serves the head, else a block at a time, each block's
    /// cached rows widened from their storage type in one SIMD pass into scratch, once for all the group's query heads
    /// (heads whose widths are not whole 8s, CPUs without AVX2, and the f16 rows the fused path declines).</summary>
    public void PagedAttention(DeviceBuffer q, PagedKvBuffers cache, DeviceIntBuffer rowInfo, int rows, int layer,
        DeviceBuffer output, DeviceBuffer probabilities, int stride, bool emitProbabilities)
    {
        var p = cache.Layout;
        var qs = D(q); var pool = I(cache.Blocks); var o = D(output); var probs = D(probabilities);
        var scales = D(cache.Scales); var tables = I(cache.Tables); var lengths = I(cache.Lengths); var info = I(rowInfo);
        int d = p.HeadDim, group = p.GroupSize, perWord = Kernels.KvCodec.PerWord(p.Storage);
        float scale = 1f / MathF.Sqrt(d);
        // 16-bit rows are widened in pair order (KvRowDecoder.ToPairOrder), which needs widths of whole 8s; the query and
        // the value sum are put in that order and back once per head.
        bool pairs = VectorRows && (p.Storage == Kernels.KvCodec.F16 || p.Storage == Kernels.KvCodec.BF16);
        ForRanges(rows * p.KvHeads, (long)stride * d * 2 * group, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (start, end) =>
        {
            // Any head's block widened: a block's words, as features.
            var widened = new float[p.BlockWords * perWord];
            var rowScales = new float[p.SlotsPerBlock];
            var pairedQueries = pairs ? new float[group * d] : null;
            var pairedSums = pairs ? new float[group * d] : null;
            for (int item = start; item < end; item++)
            {
                int r = item / p.KvHeads, g = item % p.KvHeads;
                int head = p.HeadIndex(info[4 * r], layer, g);
                int len = Kernels.PagedLayout.VisibleSlots(lengths[head], info[4 * r + 1], info[4 * r + 2]);
                var shape = p.Shape(tables, head);
                int kw = shape.KeyWidth, vw = shape.ValueWidth, first = g * group, perBlock = shape.TokensPerBlock;
                // Rows of a block are contiguous in the pool; widened, each takes its words' features (padding included).
                int keyStride = shape.KeyWords * perWord, valueStride = shape.ValueWords * perWord;
                int groupRow = r * p.Heads + first;
                if (FusedGroupAttention && GroupedPagedAttention.Serves(kw, vw)
                    && GroupedPagedAttention.Attend(p, pool, scales, tables, head, len, qs.AsSpan(groupRow * d, group * d),
                        probs.AsSpan(groupRow * stride, group * stride), stride, o.AsSpan(groupRow * d, group * d)))
                    continue;
                bool pairKeys = pairs && kw % 8 == 0, pairValues = pairs && vw % 8 == 0;
                ReadOnlySpan<float> Query(int h) => pairKeys ? pairedQueries.AsSpan((h - first) * kw, kw)
                    : qs.AsSpan((r * p.Heads + h) * d, kw);
                if (pairKeys)
                    for (int h = first; h < first + group; h++)
                        KvRowDecoder.ToPairOrder(qs.AsSpan((r * p.Heads + h) * d, kw), pairedQueries.AsSpan((h - first) * kw, kw));
                for (int t0 = 0; t0 < len; t0 += perBlock)
                {
                    int count = Math.Min(perBlock, len - t0), slot0 = SlotOf(p, tables, head, shape, t0);
                    int at = (int)p.KeyOffset(slot0, shape);
                    var keys = pairKeys ? WidenedPairs(pool, at, count, shape.KeyWords, kw, p.Storage, widened)
                        : Widened(pool, at, count * shape.KeyWords, p.Storage, widened);
                    var keyScales = p.HasScales ? RowScales(scales, slot0, count, 0, rowScales) : default;
                    for (int h = first; h < first + group; h++)
                    {
                        var query = Query(h);
                        var scores = probs.AsSpan((r * p.Heads + h) * stride + t0, count);
                        if (VectorRows && kw % 8 == 0) SimdMath.Scores(query, keys, keyStride, count, scale, keyScales, scores);
                        else
                            for (int i = 0; i < count; i++)
                                scores[i] = SimdMath.Dot(query, keys.Slice(i * keyStride, kw))
                                    * (p.HasScales ? scale * scales[2 * (slot0 + i)] : scale);
                    }
                }
                for (int h = first; h < first + group; h++)
                {
                    var sc = probs.AsSpan((r * p.Heads + h) * stride, len);
                    SimdMath.SoftMax(sc, sc);
                    o.AsSpan((r * p.Heads + h) * d, d).Clear();
                }
                if (pairValues) pairedSums.AsSpan(0, group * vw).Clear();
                for (int t0 = 0; t0 < len; t0 += perBlock)
                {
                    int count = Math.Min(perBlock, len - t0), slot0 = SlotOf(p, tables, head, shape, t0);
                    int at = (int)p.ValueOffset(slot0, shape);
                    var values = pairValues ? WidenedPairs(pool, at, count, shape.ValueWords, vw, p.Storage, widened)
                        : Widened(pool, at, count * shape.ValueWords, p.Storage, widened);
                    var valueScales = p.HasScales ? RowScales(scales, slot0, count, 1, rowScales) : default;
                    for (int h = first; h < first + group; h++)
                    {
                        var dst = pairValues ? pairedSums.AsSpan((h - first) * vw, vw) : o.AsSpan((r * p.Heads + h) * d, vw);
                        var weights = probs.AsSpan((r * p.Heads + h) * stride + t0, count);
                        if (VectorRows && vw % 8 == 0) SimdMath.WeightedSum(values, valueStride, count, weights, valueScales, dst);
                        else
                            for (int i = 0; i < count; i++)
                                TensorPrimitives.MultiplyAdd(values.Slice(i * valueStride, vw),
                                    p.HasScales ? weights[i] * scales[2 * (slot0 + i) + 1] : weights[i], dst, dst);
                    }
                }
                if (pairValues)
                    for (int h = first; h < first + group; h++)
                        KvRowDecoder.FromPairOrder(pairedSums.AsSpan((h - first) * vw, vw), o.AsSpan((r * p.Heads + h) * d, vw));
            }
        });
    }

    /// <summary>Whether decode attention takes <see cref="GroupedPagedAttention"/> where it serves the heads' widths (the
    /// default), or the block-widening path below for every head; settable so tests compare the two in one process.</summary>
    internal static bool FusedGroupAttention { get; set; } = true;

    /// <summary>count rows of a 16-bit pool from offset (rowWords words each) widened into scratch in row pair order, the
    /// first width features of each, rows at the pool's stride.</summary>
    private static ReadOnlySpan<float> WidenedPairs(int[] pool, int offset, int count, int rowWords, int width, int storage,
        float[] scratch)
    {
        int stride = rowWords * Kernels.KvCodec.PerWord(storage);
        KvRowDecoder.DecodePaired(pool.AsSpan(offset, count * rowWords), rowWords, count, width, scratch, stride, storage);
        return scratch.AsSpan(0, count * stride);
    }

    /// <summary>Whether the row-blocked score and weighted-sum routines run (they are written for Vector256; a JIT-time
    /// constant).</summary>
    private static bool VectorRows => System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated;

    /// <summary>A q8 pool's per-row scales of a block's count rows from slot0, gathered: scales holds a (key, value) pair
    /// per slot, and which picks the key's (0) or the value's (1).</summary>
    private static ReadOnlySpan<float> RowScales(float[] scales, int slot0, int count, int which, float[] into)
    {
        for (int i = 0; i < count; i++) into[i] = scales[2 * (slot0 + i) + which];
        return into.AsSpan(0, count);
    }

    /// <summary>words packed words of a pool from offset as f32 features: f32 pools in place, others widened into scratch
    /// (q8: the codes, unscaled).</summary>
    private static ReadOnlySpan<float> Widened(int[] pool, int offset, int words, int storage, float[] scratch)
    {
        var packed = pool.AsSpan(offset, words);
        if (storage == Kernels.KvCodec.F32) return System.Runtime.InteropServices.MemoryMarshal.Cast<int, float>(packed);
        var features = scratch.AsSpan(0, words * Kernels.KvCodec.PerWord(storage));
        KvRowDecoder.Decode(packed, features, storage);
        return features;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void AccumulateMetric(DeviceBuffer probabilities, int stride, PagedKvBuffers cache, DeviceIntBuffer rowInfo,
        DeviceIntBuffer modes, int rows, int layer)
    {
        var p = cache.Layout;
        var probs = D(probabilities); var metric = D(cache.Metric); var tables = I(cache.Tables); var lengths = I(cache.Lengths);
        var info = I(rowInfo); var mode = I(modes);
        int group = p.GroupSize;
        for (int r = 0; r < rows; r++)
        {
            if (mode[r] == (int)MetricAccumulation.None) continue;
            bool squared = mode[r] == (int)MetricAccumulation.Squared;
            for (int g = 0; g < p.KvHeads; g++)
            {
                int head = p.HeadIndex(info[4 * r], layer, g);
                var shape = p.Shape(tables, head);
                int visible = Kernels.PagedLayout.VisibleSlots(lengths[head], info[4 * r + 1], info[4 * r + 2]);
                for (int t = 0; t < visible; t++)
                {
                    float sum = 0;
                    for (int q = g * group; q < (g + 1) * group; q++)
                    {
                        float v = probs[(r * p.Heads + q) * stride + t];
                        sum += squared ? v * v : v;
                    }
                    metric[SlotOf(p, tables, head, shape, t)] += sum;
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void MoveSlots(PagedKvBuffers cache, DeviceIntBuffer moves, int count)
    {
        var p = cache.Layout;
        var pool = I(cache.Blocks); var pos = I(cache.Positions); var metric = D(cache.Metric);
        var scales = D(cache.Scales); var mv = I(moves); var tables = I(cache.Tables);
        for (int m = 0; m < count; m++)
        {
            int from = mv[3 * m], to = mv[3 * m + 1];
            var shape = p.Shape(tables, mv[3 * m + 2]);
            pool.AsSpan((int)p.KeyOffset(from, shape), shape.KeyWords).CopyTo(pool.AsSpan((int)p.KeyOffset(to, shape), shape.KeyWords));
            pool.AsSpan((int)p.ValueOffset(from, shape), shape.ValueWords)
                .CopyTo(pool.AsSpan((int)p.ValueOffset(to, shape), shape.ValueWords));
            pos[to] = pos[from];
            metric[to] = metric[from];
            if (p.HasScales) { scales[2 * to] = scales[2 * from]; scales[2 * to + 1] = scales[2 * from + 1]; }
        }
    }

    public int ArgMax(DeviceBuffer x, int offset, int count) => TensorPrimitives.IndexOfMax(D(x).AsSpan(offset, count));
}
