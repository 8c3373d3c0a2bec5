using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Algorithms.RadixSortOperations;
using ILGPU.Algorithms.ScanReduceOperations;
using ILGPU.Runtime;
using KvIlgpu.Cache;
using KvIlgpu.Compute;
using KvIlgpu.Kernels;

namespace KvIlgpu.Compression;

/// <summary>SPEC 3's planning on the device, for a cache on an ILGPU accelerator: the metrics never leave it. Slots are
/// keyed (head, metric) and radix-sorted (ILGPU.Algorithms), chunk scores are read at j*B + fill - 1, chunks are
/// radix-sorted by (score, head, chunk) across all heads and layers, an exclusive scan (ILGPU.Algorithms) of their
/// evictions finds the cut, and each head's count of taken chunks comes back with its sorted slots. It selects exactly
/// what <see cref="EvictionPlanner"/> selects on the host.</summary>
public sealed class DeviceEvictionPlanner
{
    private readonly Accelerator _a;
    private readonly LaunchShape _shape;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<int>, ArrayView<ulong>, ArrayView<int>, ArrayView<int>,
        int, int, PagedLayout, int, int> _sortKeys;
    private readonly Action<KernelConfig, ArrayView<ulong>, ArrayView<int>, ArrayView<int>, ArrayView<ulong>, ArrayView<int>, int, int> _chunkKeys;
    private readonly Action<KernelConfig, ArrayView<int>, ArrayView<int>, ArrayView<int>, int> _evictsInOrder;
    private readonly Action<KernelConfig, ArrayView<ulong>, ArrayView<int>, ArrayView<int>, int, int> _takeChunks;
    private readonly RadixSortPairs<ulong, Stride1D.Dense, int, Stride1D.Dense> _sortPairs;
    private readonly Scan<int, Stride1D.Dense, Stride1D.Dense> _exclusiveScan;

    private static readonly Dictionary<Accelerator, DeviceEvictionPlanner> Planners = [];

    /// <summary>The planner of an accelerator (its kernels are compiled once).</summary>
    public static DeviceEvictionPlanner For(IlgpuBackend backend)
    {
        lock (Planners)
        {
            if (!Planners.TryGetValue(backend.Accelerator, out var planner)) Planners[backend.Accelerator] = planner = new DeviceEvictionPlanner(backend);
            return planner;
        }
    }

    private DeviceEvictionPlanner(IlgpuBackend backend)
    {
        _a = backend.Accelerator;
        _shape = backend.Shape;
        _sortKeys = _a.LoadStreamKernel<ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<int>, ArrayView<ulong>, ArrayView<int>, ArrayView<int>,
            int, int, PagedLayout, int, int>(EvictionKernels.SortKeys);
        _chunkKeys = _a.LoadStreamKernel<ArrayView<ulong>, ArrayView<int>, ArrayView<int>, ArrayView<ulong>, ArrayView<int>, int, int>(EvictionKernels.ChunkKeys);
        _evictsInOrder = _a.LoadStreamKernel<ArrayView<int>, ArrayView<int>, ArrayView<int>, int>(EvictionKernels.EvictsInOrder);
        _takeChunks = _a.LoadStreamKernel<ArrayView<ulong>, ArrayView<int>, ArrayView<int>, int, int>(EvictionKernels.TakeChunks);
        _sortPairs = _a.CreateRadixSortPairs<ulong, Stride1D.Dense, int, Stride1D.Dense, AscendingUInt64>();
        _exclusiveScan = _a.CreateScan<int, Stride1D.Dense, Stride1D.Dense, AddInt32>(ScanKind.Exclusive);
    }

    /// <summary>The plan for every (layer, KV head) of one sequence, in (layer, KV head) order.</summary>
    public EvictionPlan Plan(PagedKvCache cache, int sequence, int sequenceLength, EvictionBudget budget)
    {
        budget.Validate();
        var layout = cache.Layout;
        int heads = cache.HeadsPerSequence, firstHead = cache.Head(sequence, 0, 0), b = layout.BlockSize;
        if (heads > 0xFFFF) throw new NotSupportedException("the device planner handles up to 65,535 heads per sequence");
        var lengths = new int[heads];
        for (int l = 0; l < layout.Layers; l++)
            for (int k = 0; k < layout.KvHeads; k++) lengths[l * layout.KvHeads + k] = cache.Length(sequence, l, k);
        var offsets = new int[heads + 1];
        var chunkOffsets = new int[heads + 1];
        for (int h = 0; h < heads; h++)
        {
            offsets[h + 1] = offsets[h] + lengths[h];
            chunkOffsets[h + 1] = chunkOffsets[h] + (lengths[h] + b - 1) / b;
        }
        int total = offsets[heads], chunks = chunkOffsets[heads];
        var evicted = new int[heads][];
        if (total == 0) { Array.Fill(evicted, []); return new EvictionPlan(evicted); }

        var buffers = cache.Buffers;
        using var offsetBuffer = _a.Allocate1D(offsets);
        using var chunkOffsetBuffer = _a.Allocate1D(chunkOffsets);
        using var keys = _a.Allocate1D<ulong>(total);
        using var slots = _a.Allocate1D<int>(total);
        using var counters = _a.Allocate1D<int>(1);
        counters.MemSetToZero();
        _sortKeys(_shape.Elementwise(total), IlgpuBackend.View(buffers.Metric), IlgpuBackend.View(buffers.Positions), IlgpuBackend.View(buffers.Tables),
            offsetBuffer.View, keys.View, slots.View, counters.View, heads, firstHead, layout,
            sequenceLength - budget.ProtectedWindow, budget.Sinks);
        Sort(keys.View, slots.View);

        using var chunkKeys = _a.Allocate1D<ulong>(chunks);
        using var chunkIds = _a.Allocate1D(Enumerable.Range(0, chunks).ToArray());
        using var chunkEvicts = _a.Allocate1D<int>(chunks);
        _chunkKeys(_shape.Elementwise(heads), keys.View, offsetBuffer.View, chunkOffsetBuffer.View, chunkKeys.View, chunkEvicts.View, heads, b);
        Sort(chunkKeys.View, chunkIds.View);
        using var inOrder = _a.Allocate1D<int>(chunks);
        using var before = _a.Allocate1D<int>(chunks);
        _evictsInOrder(_shape.Elementwise(chunks), chunkIds.View, chunkEvicts.View, inOrder.View, chunks);
        using (var temp = _a.Allocate1D<int>(_a.ComputeScanTempStorageSize<int>(chunks)))
            _exclusiveScan(_a.DefaultStream, inOrder.View, before.View, temp.View);

        int evictable = counters.GetAsArray1D()[0];
        long needed = budget.MaxCacheTokens is int perHead ? total - (long)perHead * heads
            : evictable - (long)Math.Ceiling(budget.KeepRate!.Value * evictable);
        using var taken = _a.Allocate1D<int>(heads);
        taken.MemSetToZero();
        if (needed > 0)
            _takeChunks(_shape.Elementwise(chunks), chunkKeys.View, before.View, taken.View, chunks, (int)Math.Min(needed, int.MaxValue));
        var takenHost = taken.GetAsArray1D();
        var sortedSlots = slots.GetAsArray1D();
        for (int h = 0; h < heads; h++)
        {
            int fill = lengths[h] % b == 0 ? b : lengths[h] % b;
            int count = takenHost[h] == 0 ? 0 : (takenHost[h] - 1) * b + fill;
            evicted[h] = sortedSlots[offsets[h]..(offsets[h] + count)];
        }
        return new EvictionPlan(evicted);
    }

    private void Sort(ArrayView<ulong> keys, ArrayView<int> values)
    {
        using var temp = _a.Allocate1D<int>(_a.ComputeRadixSortPairsTempStorageSize<ulong, int, AscendingUInt64>((Index1D)keys.IntLength));
        _sortPairs(_a.DefaultStream, keys, values, temp.View);
    }
}
