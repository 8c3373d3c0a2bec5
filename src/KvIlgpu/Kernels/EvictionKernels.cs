using ILGPU;

namespace KvIlgpu.Kernels;

/// <summary>The device side of SPEC 3's eviction planning for one sequence. The heads of the sequence are numbered
/// 0..H-1 (global cache head firstHead + h); slot i of the flat arrays belongs to head h when
/// offsets[h] &lt;= i &lt; offsets[h + 1], at logical index i - offsets[h]. Sorting is done between these kernels by
/// ILGPU.Algorithms' radix sort on 64-bit keys that carry every tie-break, so plans are deterministic.</summary>
internal static class EvictionKernels
{
    /// <summary>Metric bits that sort like the floats (for the non-negative metrics and +infinity used here, and for
    /// negative values too).</summary>
    public static uint OrderedBits(float value)
    {
        uint bits = (uint)Interop.FloatAsInt(value);
        return (bits & 0x80000000u) != 0 ? ~bits : bits | 0x80000000u;
    }

    private static int HeadOf(ArrayView<int> offsets, int heads, int i)
    {
        int lo = 0, hi = heads - 1;
        while (lo < hi)
        {
            int mid = (lo + hi + 1) / 2;
            if (offsets[mid] <= i) lo = mid; else hi = mid - 1;
        }
        return lo;
    }

    /// <summary>Step 1: every slot's sort key (head, metric with protected slots at +infinity) and logical index;
    /// counts the evictable slots into counters[0].</summary>
    public static void SortKeys(ArrayView<float> metric, ArrayView<int> positions, ArrayView<int> tables, ArrayView<int> offsets,
        ArrayView<ulong> keys, ArrayView<int> slots, ArrayView<int> counters, int heads, int firstHead, PagedLayout layout,
        int recentFrom, int sinks, MetricAverage average)
    {
        int total = offsets[heads];
        for (int i = GridStride.Start; i < total; i += GridStride.Step)
        {
            int h = HeadOf(offsets, heads, i), t = i - offsets[h];
            var shape = layout.Shape(tables, firstHead + h);
            long physical = layout.Slot(tables[layout.TableIndex(firstHead + h, t, shape)], t, shape);
            int position = positions[physical];
            bool isProtected = position >= recentFrom || position < sinks;
            float m = isProtected ? float.PositiveInfinity : average.Score(metric[physical], position);
            if (!isProtected) Atomic.Add(ref counters[0], 1);
            keys[i] = ((ulong)h << 32) | OrderedBits(m);
            slots[i] = t;
        }
    }

    /// <summary>Step 2: chunk j of head h frees j+1 blocks; its score is the sorted metric at j*B + fill - 1 (B: the
    /// head's tokens per block, blockSizes[h]; fill: the slots of the head's last block). Chunk keys order by score, then
    /// head, then chunk; chunks that would evict a protected slot (and unused entries) get the largest key and evict
    /// nothing.</summary>
    public static void ChunkKeys(ArrayView<ulong> sortedKeys, ArrayView<int> offsets, ArrayView<int> chunkOffsets,
        ArrayView<ulong> chunkKeys, ArrayView<int> chunkEvicts, ArrayView<int> blockSizes, int heads)
    {
        uint infinity = OrderedBits(float.PositiveInfinity);
        for (int h = GridStride.Start; h < heads; h += GridStride.Step)
        {
            int blockSize = blockSizes[h];
            int n = offsets[h + 1] - offsets[h], fill = n % blockSize == 0 ? blockSize : n % blockSize;
            for (int j = 0; j < chunkOffsets[h + 1] - chunkOffsets[h]; j++)
            {
                int c = chunkOffsets[h] + j;
                uint score = (uint)(sortedKeys[offsets[h] + j * blockSize + fill - 1] & 0xFFFFFFFFu);
                bool usable = score != infinity;
                chunkKeys[c] = usable ? ((ulong)score << 32) | ((ulong)h << 16) | (uint)j : ulong.MaxValue;
                chunkEvicts[c] = usable ? (j == 0 ? fill : blockSize) : 0;
            }
        }
    }

    /// <summary>evictsInOrder[k] = the number of KVs the k-th cheapest chunk evicts.</summary>
    public static void EvictsInOrder(ArrayView<int> sortedChunkIds, ArrayView<int> chunkEvicts, ArrayView<int> evictsInOrder, int chunks)
    {
        for (int k = GridStride.Start; k < chunks; k += GridStride.Step) evictsInOrder[k] = chunkEvicts[sortedChunkIds[k]];
    }

    /// <summary>Step 3: chunks are taken cheapest first while fewer than needed KVs are evicted (before[k] is the
    /// exclusive prefix sum of evictsInOrder); taken[h] counts each head's chunks.</summary>
    public static void TakeChunks(ArrayView<ulong> sortedChunkKeys, ArrayView<int> before, ArrayView<int> taken, int chunks, int needed)
    {
        for (int k = GridStride.Start; k < chunks; k += GridStride.Step)
        {
            ulong key = sortedChunkKeys[k];
            if (key != ulong.MaxValue && before[k] < needed) Atomic.Add(ref taken[(int)((key >> 16) & 0xFFFF)], 1);
        }
    }
}
