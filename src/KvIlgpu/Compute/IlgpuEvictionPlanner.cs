using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Algorithms.RadixSortOperations;
using ILGPU.Algorithms.ScanReduceOperations;
using ILGPU.Runtime;
using KvIlgpu.Kernels;

namespace KvIlgpu.Compute;

/// <summary>SPEC 3's planning on the device, for a cache on an ILGPU accelerator: the metrics never leave it. Slots are
/// keyed (head, metric) and radix-sorted (ILGPU.Algorithms), chunk scores are read at j*B + fill - 1, chunks are
/// radix-sorted by (score, head, chunk) across all heads and layers, an exclusive scan (ILGPU.Algorithms) of their
/// evictions finds the cut, and each head's count of taken chunks comes back with its sorted slots. It selects exactly
/// what the host's <c>CrossHeadChunkSelection</c> selects. <see cref="IlgpuBackend"/> offers it as its
/// <see cref="IComputeBackend.EvictionPlanner"/>.</summary>
internal sealed class IlgpuEvictionPlanner : IDeviceEvictionPlanner
{
    private readonly Accelerator _a;
    private readonly LaunchShape _shape;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<int>, ArrayView<ulong>,
        ArrayView<int>, ArrayView<int>,
        int, int, PagedLayout, int, int, MetricAverage> _sortKeys;
    private readonly Action<KernelConfig, ArrayView<ulong>, ArrayView<int>, ArrayView<int>, ArrayView<ulong>, ArrayView<int>,
        ArrayView<int>, int> _chunkKeys;
    private readonly Action<KernelConfig, ArrayView<int>, ArrayView<int>, ArrayView<int>, int> _evictsInOrder;
    private readonly Action<KernelConfig, ArrayView<ulong>, ArrayView<int>, ArrayView<int>, int, int> _takeChunks;
    private readonly RadixSortPairs<ulong, Stride1D.Dense, int, Stride1D.Dense> _sortPairs;
    private readonly Scan<int, Stride1D.Dense, Stride1D.Dense> _exclusiveScan;

    /// <summary>Compiles the planning kernels for an accelerator.</summary>
    public IlgpuEvictionPlanner(Accelerator accelerator, LaunchShape shape)
    {
        _a = accelerator;
        _shape = shape;
        _sortKeys = _a.LoadStreamKernel<ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<int>, ArrayView<ulong>,
            ArrayView<int>, ArrayView<int>,
            int, int, PagedLayout, int, int, MetricAverage>(EvictionKernels.SortKeys);
        _chunkKeys = _a.LoadStreamKernel<ArrayView<ulong>, ArrayView<int>, ArrayView<int>, ArrayView<ulong>, ArrayView<int>,
            ArrayView<int>, int>(EvictionKernels.ChunkKeys);
        _evictsInOrder = _a.LoadStreamKernel<ArrayView<int>, ArrayView<int>, ArrayView<int>, int>(EvictionKernels.EvictsInOrder);
        _takeChunks = _a.LoadStreamKernel<ArrayView<ulong>, ArrayView<int>, ArrayView<int>, int, int>(EvictionKernels.TakeChunks);
        _sortPairs = _a.CreateRadixSortPairs<ulong, Stride1D.Dense, int, Stride1D.Dense, AscendingUInt64>();
        _exclusiveScan = _a.CreateScan<int, Stride1D.Dense, Stride1D.Dense, AddInt32>(ScanKind.Exclusive);
    }

    /// <inheritdoc/>
    public int[][] PlanChunks(PagedKvBuffers cache, int firstHead, int[] lengths, int[] blockSizes, int recentFrom, int sinks,
        int? maxCacheTokens, double? keepRate, MetricAverage average = default)
    {
        if ((maxCacheTokens == null) == (keepRate == null)) throw new ArgumentException("give exactly one of maxCacheTokens or keepRate");
        int heads = lengths.Length;
        if (heads > 0xFFFF) throw new NotSupportedException("the device planner handles up to 65,535 heads per sequence");
        var offsets = new int[heads + 1];
        var chunkOffsets = new int[heads + 1];
        for (int h = 0; h < heads; h++)
        {
            offsets[h + 1] = offsets[h] + lengths[h];
            chunkOffsets[h + 1] = chunkOffsets[h] + (lengths[h] + blockSizes[h] - 1) / blockSizes[h];
        }
        int total = offsets[heads], chunks = chunkOffsets[heads];
        var evicted = new int[heads][];
        if (total == 0) { Array.Fill(evicted, []); return evicted; }

        var buffers = cache;
        using var offsetBuffer = _a.Allocate1D(offsets);
        using var chunkOffsetBuffer = _a.Allocate1D(chunkOffsets);
        using var keys = _a.Allocate1D<ulong>(total);
        using var slots = _a.Allocate1D<int>(total);
        using var counters = _a.Allocate1D<int>(1);
        counters.MemSetToZero();
        _sortKeys(_shape.Elementwise(total), IlgpuBackend.View(buffers.Metric), IlgpuBackend.View(buffers.Positions),
            IlgpuBackend.View(buffers.Tables),
            offsetBuffer.View, keys.View, slots.View, counters.View, heads, firstHead, cache.Layout, recentFrom, sinks, average);
        Sort(keys.View, slots.View);

        using var chunkKeys = _a.Allocate1D<ulong>(chunks);
        using var chunkIds = _a.Allocate1D(Enumerable.Range(0, chunks).ToArray());
        using var chunkEvicts = _a.Allocate1D<int>(chunks);
        using var blockSizeBuffer = _a.Allocate1D(blockSizes);
        _chunkKeys(_shape.Elementwise(heads), keys.View, offsetBuffer.View, chunkOffsetBuffer.View, chunkKeys.View, chunkEvicts.View,
            blockSizeBuffer.View, heads);
        Sort(chunkKeys.View, chunkIds.View);
        using var inOrder = _a.Allocate1D<int>(chunks);
        using var before = _a.Allocate1D<int>(chunks);
        _evictsInOrder(_shape.Elementwise(chunks), chunkIds.View, chunkEvicts.View, inOrder.View, chunks);
        using (var temp = _a.Allocate1D<int>(_a.ComputeScanTempStorageSize<int>(chunks)))
            _exclusiveScan(_a.DefaultStream, inOrder.View, before.View, temp.View);

        int evictable = counters.GetAsArray1D()[0];
        long needed = maxCacheTokens is int perHead ? total - (long)perHead * heads
            : evictable - (long)Math.Ceiling(keepRate!.Value * evictable);
        using var taken = _a.Allocate1D<int>(heads);
        taken.MemSetToZero();
        if (needed > 0)
            _takeChunks(_shape.Elementwise(chunks), chunkKeys.View, before.View, taken.View, chunks, (int)Math.Min(needed, int.MaxValue));
        var takenHost = taken.GetAsArray1D();
        var sortedSlots = slots.GetAsArray1D();
        for (int h = 0; h < heads; h++)
        {
            int b = blockSizes[h], fill = lengths[h] % b == 0 ? b : lengths[h] % b;
            int count = takenHost[h] == 0 ? 0 : (takenHost[h] - 1) * b + fill;
            evicted[h] = sortedSlots[offsets[h]..(offsets[h] + count)];
        }
        return evicted;
    }

    private void Sort(ArrayView<ulong> keys, ArrayView<int> values)
    {
        using var temp = _a.Allocate1D<int>(_a.ComputeRadixSortPairsTempStorageSize<ulong, int, AscendingUInt64>((Index1D)keys.IntLength));
        _sortPairs(_a.DefaultStream, keys, values, temp.View);
    }
}
