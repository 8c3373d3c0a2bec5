using KvIlgpu.Compute;
using KvIlgpu.Kernels;
using KvIlgpu.Models;

namespace KvIlgpu.Cache;

/// <summary>The paged KV cache of SPEC 1: one pool of blocks of one size, each holding K and V of tokens of ONE
/// (layer, KV head), as many as fit at that head's widths (BlockSize of the widest; see <see cref="PagedLayout"/>); per
/// (sequence, layer, KV head) a block table and a length, kept on the device and mirrored on the host (which decides
/// allocation). Lengths may differ between heads, and so may widths. Memory accounting covers blocks and metadata
/// (tables, lengths, per-slot position and metric).</summary>
internal sealed class PagedKvCache : IDisposable
{
    private readonly IComputeBackend _backend;
    private readonly int[] _tables;   // host mirror of the device tables (the heads' shapes first)
    private readonly HeadShape[] _shapes; // per (layer, KV head)
    private readonly int[] _lengths;  // host mirror of the device lengths
    private readonly int[] _blockCounts; // blocks held per head
    private readonly Stack<int> _freeSequences;
    private readonly bool[] _sequenceInUse;

    public PagedLayout Layout { get; }
    /// <summary>The backend whose device holds the cache.</summary>
    public IComputeBackend Backend => _backend;
    public PagedKvBuffers Buffers { get; }
    public BlockPool Pool { get; }
    public int MaxSequences { get; }
    public int HeadsPerSequence => Layout.HeadsPerSequence;
    /// <summary>Bytes of one block: packed K and V, plus each slot's position, metric and (q8) scales.</summary>
    public long BytesPerBlock { get; }
    /// <summary>Bytes of the block tables and lengths.</summary>
    public long MetadataBytes { get; }
    public long TotalBytes => BytesPerBlock * Pool.Total + MetadataBytes;
    public long UsedBytes => BytesPerBlock * Pool.Used + MetadataBytes;
    public int PeakBlocksUsed { get; private set; }
    public long PeakBytes => BytesPerBlock * PeakBlocksUsed + MetadataBytes;

    public PagedKvCache(IComputeBackend backend, ModelConfig config, PagedCacheOptions options)
    {
        if (options.BlockSize <= 0) throw new InvalidOptionException(nameof(options.BlockSize),
            $"{nameof(options.BlockSize)} must be positive (got {options.BlockSize})");
        if (options.MaxSequences <= 0) throw new ArgumentOutOfRangeException(nameof(options), "MaxSequences must be positive");
        _backend = backend;
        if (options.Storage == KvStorageType.Auto) throw new ArgumentException("resolve the storage type first", nameof(options));
        Layout = options.LayoutFor(config);
        MaxSequences = options.MaxSequences;
        int heads = MaxSequences * HeadsPerSequence;
        BytesPerBlock = Layout.BytesPerBlock;
        MetadataBytes = Layout.MetadataBytes(MaxSequences);
        long budget = options.MemoryBytes ?? (long)(backend.MemoryBytes * options.MemoryFraction);
        long blocks = (budget - MetadataBytes) / BytesPerBlock;
        if (blocks < HeadsPerSequence)
            throw new InvalidOptionException("KvMemoryBytes",
                $"KvMemoryBytes {budget} holds {Math.Max(0, blocks)} blocks of {BytesPerBlock} bytes after {MetadataBytes} bytes of " +
                    $"metadata; one token of one sequence needs {HeadsPerSequence} blocks " +
                        $"({HeadsPerSequence * BytesPerBlock + MetadataBytes} bytes)");
        // One buffer holds at most int.MaxValue elements.
        long perBlock = Math.Max(Layout.PoolWords(1), 2L * Layout.SlotsPerBlock);
        blocks = Math.Min(blocks, int.MaxValue / perBlock);
        Pool = new BlockPool((int)blocks);
        int slots = (int)blocks * Layout.SlotsPerBlock;
        Buffers = new PagedKvBuffers(Layout, backend.AllocateInts((int)Layout.PoolWords(blocks)),
            backend.AllocateInts(slots), backend.Allocate(slots), backend.AllocateInts(Layout.TableWords(MaxSequences)),
                backend.AllocateInts(heads), backend.Allocate(Layout.HasScales ? 2 * slots : 1));
        _tables = new int[Layout.TableWords(MaxSequences)];
        _shapes = new HeadShape[HeadsPerSequence];
        for (int i = 0; i < HeadsPerSequence; i++)
        {
            _shapes[i] = Layout.ShapeFor(options.KeyWidthOf(i), options.ValueWidthOf(i));
            PagedLayout.WriteShape(_tables, i, _shapes[i]);
        }
        backend.WriteInts(Buffers.Tables, _tables.AsSpan(0, Layout.ShapeWords));
        _lengths = new int[heads];
        _blockCounts = new int[heads];
        _sequenceInUse = new bool[MaxSequences];
        _freeSequences = new Stack<int>(Enumerable.Range(0, MaxSequences).Reverse());
    }

    /// <summary>Index of a (sequence, layer, KV head) among all heads of the cache (block tables, lengths).</summary>
    public int Head(int sequence, int layer, int kvHead) => Layout.HeadIndex(sequence, layer, kvHead);

    /// <summary>What a (layer, KV head) stores: its widths and its tokens per block.</summary>
    public HeadShape Shape(int layer, int kvHead) => _shapes[layer * Layout.KvHeads + kvHead];

    /// <summary>Each (layer, KV head)'s tokens per block, layer-major.</summary>
    public int[] TokensPerBlock() => [.. _shapes.Select(s => s.TokensPerBlock)];

    private HeadShape ShapeOf(int head) => _shapes[head % HeadsPerSequence];

    public int Length(int sequence, int layer, int kvHead) => _lengths[Head(sequence, layer, kvHead)];
    public int Block(int sequence, int layer, int kvHead, int index) => _tables[Layout.BlockEntry(Head(sequence, layer, kvHead), index)];

    /// <summary>The sequences that hold a row of block tables now.</summary>
    public IEnumerable<int> SequencesInUse => Enumerable.Range(0, MaxSequences).Where(s => _sequenceInUse[s]);

    /// <summary>KVs the sequence holds across all its heads.</summary>
    public long SequenceLength(int sequence)
    {
        long sum = 0;
        for (int h = 0; h < HeadsPerSequence; h++) sum += _lengths[sequence * HeadsPerSequence + h];
        return sum;
    }

    /// <summary>Blocks the sequence holds across all its heads.</summary>
    public int BlocksHeld(int sequence)
    {
        int sum = 0;
        for (int h = 0; h < HeadsPerSequence; h++) sum += _blockCounts[Head(sequence, 0, 0) + h];
        return sum;
    }

    /// <summary>Blocks a sequence of this many tokens needs across all its heads.</summary>
    public int BlocksFor(int tokens) => _shapes.Sum(s => PagedLayout.BlocksFor(tokens, s));

    /// <summary>Reserves a row of block tables for a new sequence; null when all are in use.</summary>
    public int? TryAddSequence()
    {
        if (_freeSequences.Count == 0) return null;
        int s = _freeSequences.Pop();
        _sequenceInUse[s] = true;
        return s;
    }

    /// <summary>Makes sure every head of the sequence has room for extraTokens more, allocating blocks only for the
    /// heads whose blocks are full: all or nothing. False when the pool is short.</summary>
    public bool TryReserve(int sequence, int extraTokens)
    {
        int needed = 0;
        for (int h = 0; h < HeadsPerSequence; h++)
        {
            int head = sequence * HeadsPerSequence + h;
            int want = PagedLayout.BlocksFor(_lengths[head] + extraTokens, _shapes[h]);
            if (_lengths[head] + extraTokens > Layout.MaxBlocksPerHead * Layout.BlockSize)
                throw new ContextOverflowException(_lengths[head] + extraTokens, Layout.MaxBlocksPerHead * Layout.BlockSize);
            needed += Math.Max(0, want - _blockCounts[head]);
        }
        if (needed > Pool.Free) return false;
        Span<int> one = stackalloc int[1];
        for (int h = 0; h < HeadsPerSequence; h++)
        {
            int head = sequence * HeadsPerSequence + h;
            int want = PagedLayout.BlocksFor(_lengths[head] + extraTokens, _shapes[h]);
            int first = _blockCounts[head];
            while (_blockCounts[head] < want)
            {
                Pool.TryAllocate(1, head, one);
                _tables[Layout.BlockEntry(head, _blockCounts[head]++)] = one[0];
            }
            if (want > first)
                _backend.WriteInts(Buffers.Tables, _tables.AsSpan(Layout.BlockEntry(head, first), want - first), Layout.BlockEntry(head,
                    first));
        }
        PeakBlocksUsed = Math.Max(PeakBlocksUsed, Pool.Used);
        return true;
    }

    /// <summary>Adds count tokens to every head's length (room must have been reserved) and updates the device.</summary>
    public void Append(int sequence, int count)
    {
        for (int h = 0; h < HeadsPerSequence; h++)
        {
            int head = sequence * HeadsPerSequence + h;
            if (_lengths[head] + count > _blockCounts[head] * _shapes[h].TokensPerBlock)
                throw new InvalidOperationException($"head {head} has no room reserved for {count} more tokens");
            _lengths[head] += count;
        }
        _backend.WriteInts(Buffers.Lengths, _lengths.AsSpan(sequence * HeadsPerSequence, HeadsPerSequence), sequence * HeadsPerSequence);
    }

    /// <summary>Frees every block of the sequence and its table row.</summary>
    public void RemoveSequence(int sequence)
    {
        if (!_sequenceInUse[sequence]) throw new InvalidOperationException($"sequence slot {sequence} is not in use");
        for (int h = 0; h < HeadsPerSequence; h++)
        {
            int head = sequence * HeadsPerSequence + h;
            for (int i = 0; i < _blockCounts[head]; i++) Pool.Release(_tables[Layout.BlockEntry(head, i)], head);
            _blockCounts[head] = 0;
            _lengths[head] = 0;
        }
        _backend.WriteInts(Buffers.Lengths, _lengths.AsSpan(sequence * HeadsPerSequence, HeadsPerSequence), sequence * HeadsPerSequence);
        _sequenceInUse[sequence] = false;
        _freeSequences.Push(sequence);
    }

    /// <summary>Physical slot (index into the K/V pools) of a head's logical slot.</summary>
    public int PhysicalSlot(int sequence, int layer, int kvHead, int index)
    {
        int head = Head(sequence, layer, kvHead);
        if ((uint)index >= (uint)_lengths[head]) throw new ArgumentOutOfRangeException(nameof(index),
            $"slot {index} of a head of length {_lengths[head]}");
        var shape = ShapeOf(head);
        return (int)Layout.Slot(_tables[Layout.TableIndex(head, index, shape)], index, shape);
    }

    /// <summary>Runs compaction moves on the device: triples of (from, to) physical slots of a head, and that head's index
    /// (<see cref="Head"/>).</summary>
    public void MoveSlots(IReadOnlyList<int> moves)
    {
        if (moves.Count == 0) return;
        using var buffer = _backend.AllocateInts(moves.Count);
        _backend.WriteInts(buffer, moves.ToArray());
        _backend.MoveSlots(Buffers, buffer, moves.Count / 3);
    }

    /// <summary>Shortens a head to newLength and returns its now-unused trailing blocks to the pool.</summary>
    public void Truncate(int sequence, int layer, int kvHead, int newLength)
    {
        int head = Head(sequence, layer, kvHead);
        if (newLength < 0 || newLength > _lengths[head]) throw new ArgumentOutOfRangeException(nameof(newLength));
        int keep = PagedLayout.BlocksFor(newLength, ShapeOf(head));
        for (int i = keep; i < _blockCounts[head]; i++) Pool.Release(_tables[Layout.BlockEntry(head, i)], head);
        _blockCounts[head] = keep;
        _lengths[head] = newLength;
        _backend.WriteInts(Buffers.Lengths, _lengths.AsSpan(head, 1), head);
    }

    /// <summary>Reads every head of a sequence back from the device: per (layer, KV head), each slot's metric and
    /// original position in logical order.</summary>
    public List<HeadSlots> ReadHeads(int sequence)
    {
        var result = new List<HeadSlots>();
        var blockMetric = new float[Layout.SlotsPerBlock];
        var blockPositions = new int[Layout.SlotsPerBlock];
        for (int layer = 0; layer < Layout.Layers; layer++)
            for (int h = 0; h < Layout.KvHeads; h++)
            {
                int head = Head(sequence, layer, h), n = _lengths[head];
                var shape = Shape(layer, h);
                int perBlock = shape.TokensPerBlock;
                var metric = new float[n];
                var positions = new int[n];
                for (int b = 0; b * perBlock < n; b++)
                {
                    int count = Math.Min(perBlock, n - b * perBlock);
                    int start = (int)Layout.Slot(_tables[Layout.BlockEntry(head, b)], 0, shape);
                    _backend.Read(Buffers.Metric, blockMetric.AsSpan(0, count), start);
                    _backend.ReadInts(Buffers.Positions, blockPositions.AsSpan(0, count), start);
                    blockMetric.AsSpan(0, count).CopyTo(metric.AsSpan(b * perBlock));
                    blockPositions.AsSpan(0, count).CopyTo(positions.AsSpan(b * perBlock));
                }
                result.Add(new HeadSlots(layer, h, metric, positions, perBlock));
            }
        return result;
    }

    /// <summary>The cached keys of one sequence's head, in logical slot order, one row of HeadDim floats per slot (widened
    /// from the storage type; features past the head's key width, which it does not store, are zero).</summary>
    public float[][] ReadKeys(int sequence, int layer, int kvHead)
    {
        int head = Head(sequence, layer, kvHead), width = ShapeOf(head).KeyWidth;
        var keys = new float[_lengths[head]][];
        ForEachKeyBlock(head, (t, block) =>
        {
            for (int i = 0; i < block.Length / width; i++)
            {
                keys[t + i] = new float[Layout.HeadDim];
                block.Slice(i * width, width).CopyTo(keys[t + i]);
            }
            return false;
        });
        return keys;
    }

    /// <summary>Multiplies every cached key of one sequence's head by mask (key-width factors), channel by channel (and
    /// stores the result in the storage type again).</summary>
    public void ScaleKeys(int sequence, int layer, int kvHead, float[] mask)
    {
        int head = Head(sequence, layer, kvHead), width = ShapeOf(head).KeyWidth;
        ForEachKeyBlock(head, (_, block) =>
        {
            for (int i = 0; i < block.Length; i++) block[i] *= mask[i % width];
            return true;
        });
    }

    private delegate bool KeyBlockVisitor(int firstSlot, Span<float> keys);

    /// <summary>Visits a head's keys block by block (one read per block; slots of a block are contiguous): body gets the
    /// logical index of the block's first slot and its keys, widened to f32; when it returns true the keys are packed
    /// and written back.</summary>
    private void ForEachKeyBlock(int head, KeyBlockVisitor body)
    {
        var shape = ShapeOf(head);
        int n = _lengths[head], width = shape.KeyWidth, words = shape.KeyWords, perBlock = shape.TokensPerBlock;
        var block = new float[perBlock * width];
        var packed = new int[perBlock * words];
        var scales = new float[2 * perBlock];
        for (int t = 0; t < n; t += perBlock)
        {
            int count = Math.Min(perBlock, n - t);
            long slot = Layout.Slot(_tables[Layout.TableIndex(head, t, shape)], t, shape);
            int offset = (int)Layout.KeyOffset(slot, shape);
            var keys = block.AsSpan(0, count * width);
            _backend.ReadInts(Buffers.Blocks, packed.AsSpan(0, count * words), offset);
            if (Layout.HasScales) _backend.Read(Buffers.Scales, scales.AsSpan(0, 2 * count), (int)(2 * slot));
            for (int i = 0; i < count; i++)
                KvCodec.LoadRow(packed.AsSpan(i * words, words), scales[2 * i], keys.Slice(i * width, width), Layout.Storage);
            if (!body(t, keys)) continue;
            for (int i = 0; i < count; i++)
                scales[2 * i] = KvCodec.StoreRow(keys.Slice(i * width, width), packed.AsSpan(i * words, words), Layout.Storage);
            _backend.WriteInts(Buffers.Blocks, packed.AsSpan(0, count * words), offset);
            if (Layout.HasScales) _backend.Write(Buffers.Scales, scales.AsSpan(0, 2 * count), (int)(2 * slot));
        }
    }

    /// <summary>Overwrites the metric of a head's first values.Length logical slots.</summary>
    public void WriteMetric(int sequence, int layer, int kvHead, ReadOnlySpan<float> values)
    {
        int head = Head(sequence, layer, kvHead);
        if (values.Length > _lengths[head]) throw new ArgumentOutOfRangeException(nameof(values), "more metric values than slots");
        var shape = ShapeOf(head);
        int perBlock = shape.TokensPerBlock;
        for (int b = 0; b * perBlock < values.Length; b++)
        {
            int count = Math.Min(perBlock, values.Length - b * perBlock);
            _backend.Write(Buffers.Metric, values.Slice(b * perBlock, count), (int)Layout.Slot(_tables[Layout.BlockEntry(head, b)], 0,
                shape));
        }
    }

    /// <summary>Test hook: gives a head an explicit block list and length (for kernels tested on scattered blocks
    /// and unequal lengths).</summary>
    internal void SetHead(int sequence, int layer, int kvHead, ReadOnlySpan<int> blocks, int length)
    {
        int head = Head(sequence, layer, kvHead);
        Span<int> one = stackalloc int[1];
        foreach (var b in blocks)
        {
            // Take exactly this block from the pool.
            var taken = new List<int>();
            while (true)
            {
                if (!Pool.TryAllocate(1, head, one)) throw new InvalidOperationException($"block {b} is not free");
                if (one[0] == b) break;
                taken.Add(one[0]);
            }
            foreach (var t in taken) Pool.Release(t, head);
            _tables[Layout.BlockEntry(head, _blockCounts[head]++)] = b;
        }
        _lengths[head] = length;
        _backend.WriteInts(Buffers.Tables, _tables.AsSpan(Layout.BlockEntry(head, 0), Layout.MaxBlocksPerHead), Layout.BlockEntry(head, 0));
        _backend.WriteInts(Buffers.Lengths, _lengths.AsSpan(head, 1), head);
    }

    /// <summary>Checks that no block is owned twice, used + free = total, and every table entry is owned by its head.</summary>
    public void CheckInvariants()
    {
        Pool.CheckInvariants();
        var seen = new HashSet<int>();
        int held = 0;
        for (int head = 0; head < _lengths.Length; head++)
        {
            if (_lengths[head] > _blockCounts[head] * ShapeOf(head).TokensPerBlock)
                throw new InvalidOperationException($"head {head} is longer than its blocks");
            for (int i = 0; i < _blockCounts[head]; i++)
            {
                int b = _tables[Layout.BlockEntry(head, i)];
                if (!seen.Add(b)) throw new InvalidOperationException($"block {b} appears in two tables");
                if (Pool.OwnerOf(b) != head) throw new InvalidOperationException($"block {b} in head {head}'s table is owned by " +
                    $"{Pool.OwnerOf(b)}");
                held++;
            }
        }
        if (held != Pool.Used) throw new InvalidOperationException($"tables hold {held} blocks but the pool says {Pool.Used} are used");
    }

    public void Dispose() => Buffers.Dispose();
}
