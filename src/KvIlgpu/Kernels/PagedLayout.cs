using KvIlgpu.Models;

namespace KvIlgpu.Kernels;

/// <summary>What one (layer, KV head) stores, read from the head of the block tables (<c>PagedLayout.Shape</c>):
/// its key and value widths in features, the words they pack into, and how many of its tokens one block holds.</summary>
internal readonly struct HeadShape
{
    public HeadShape(int keyWidth, int valueWidth, int tokensPerBlock, int storage)
    {
        KeyWidth = keyWidth; ValueWidth = valueWidth; TokensPerBlock = tokensPerBlock;
        KeyWords = KvCodec.Words(storage, keyWidth);
        ValueWords = KvCodec.Words(storage, valueWidth);
    }

    /// <summary>Features of K each of the head's slots stores.</summary>
    public int KeyWidth { get; }
    /// <summary>Features of V each of the head's slots stores.</summary>
    public int ValueWidth { get; }
    /// <summary>The head's tokens in one block.</summary>
    public int TokensPerBlock { get; }
    /// <summary>32-bit words of one slot's keys.</summary>
    public int KeyWords { get; }
    /// <summary>32-bit words of one slot's values.</summary>
    public int ValueWords { get; }
}

/// <summary>Geometry of the paged KV cache (SPEC 1), the one place its index arithmetic is written; the kernels and
/// the host code both call these methods.
/// <list type="bullet">
/// <item>Heads are numbered (sequence, layer, KV head) in that order (<see cref="HeadIndex"/>). Each (layer, KV head) may
/// store its own key and value widths (a MatryoshkaKV projection's ranks; head_dim without one).</item>
/// <item>Every block of the pool has one size: <see cref="BlockWords"/> words of packed keys and values. A block holds
/// tokens of ONE head, as many as fit at that head's widths: <see cref="BlockSize"/> of the widest head, more of a
/// narrower one (<see cref="HeadShape.TokensPerBlock"/>). In a block the head's keys come first, row after row, then its
/// values (<c>KeyOffset</c>, <c>ValueOffset</c>); each feature is packed into the 32-bit words as
/// <see cref="Storage"/> and <see cref="KvCodec"/> say.</item>
/// <item>Per-slot position, metric and (q8) scales live in arrays with <see cref="SlotsPerBlock"/> entries per block (chosen
/// so that the heads' tokens take the fewest bytes: a very narrow head may hold fewer tokens than would fit, rather than
/// every block carry room for them); <see cref="Slot"/> is a slot's index there.</item>
/// <item>The block-tables buffer starts with each (layer, KV head)'s shape, three ints (key width, value width, tokens
/// per block; <see cref="ShapeWords"/> in all, read by <c>Shape</c>), then each head's table
/// (<see cref="BlockEntry"/>), so every kernel that has the tables has the shapes.</item>
/// </list></summary>
internal readonly struct PagedLayout
{
    /// <summary>A layout with the same widths in every head; see <c>For</c> for a model's.</summary>
    /// <param name="blockSize">Tokens (slots) per block of the widest head.</param>
    /// <param name="headDim">The model's head width.</param>
    /// <param name="heads">Query heads per layer.</param>
    /// <param name="kvHeads">KV heads per layer.</param>
    /// <param name="layers">Decoder layers.</param>
    /// <param name="maxBlocksPerHead">Entries of each head's block table.</param>
    /// <param name="storage">How features are stored (a <see cref="Cache.KvStorageType"/> other than Auto).</param>
    /// <param name="keyWidth">Features of K each slot stores (0: headDim).</param>
    /// <param name="valueWidth">Features of V each slot stores (0: headDim).</param>
    public PagedLayout(int blockSize, int headDim, int heads, int kvHeads, int layers, int maxBlocksPerHead,
        Cache.KvStorageType storage = Cache.KvStorageType.F32, int keyWidth = 0, int valueWidth = 0)
        : this(blockSize, headDim, heads, kvHeads, layers, maxBlocksPerHead, storage,
            Enumerable.Repeat(keyWidth, layers * kvHeads).ToArray(), Enumerable.Repeat(valueWidth, layers * kvHeads).ToArray())
    {
    }

    /// <summary>A layout whose (layer, KV head)s store their own widths: keyWidths[layer * kvHeads + kvHead] features of K
    /// and valueWidths[...] of V (0: headDim).</summary>
    public PagedLayout(int blockSize, int headDim, int heads, int kvHeads, int layers, int maxBlocksPerHead,
        Cache.KvStorageType storage, IReadOnlyList<int> keyWidths, IReadOnlyList<int> valueWidths)
    {
        BlockSize = blockSize; HeadDim = headDim; Heads = heads; KvHeads = kvHeads; Layers = layers; MaxBlocksPerHead = maxBlocksPerHead;
        if (storage == Cache.KvStorageType.Auto) throw new ArgumentException("resolve Auto to a storage type first", nameof(storage));
        Storage = (int)storage;
        if (keyWidths.Count != layers * kvHeads || valueWidths.Count != layers * kvHeads)
            throw new ArgumentException($"give a width for each of the {layers * kvHeads} (layer, KV head)s", nameof(keyWidths));
        int widest = 0;
        var slotWords = new int[layers * kvHeads];
        for (int i = 0; i < slotWords.Length; i++)
        {
            int kw = keyWidths[i] == 0 ? headDim : keyWidths[i], vw = valueWidths[i] == 0 ? headDim : valueWidths[i];
            if (kw < 1 || kw > headDim || vw < 1 || vw > headDim)
                throw new ArgumentOutOfRangeException(nameof(keyWidths), $"cached widths must be 1..{headDim} (got {kw} and {vw})");
            slotWords[i] = KvCodec.Words(Storage, kw) + KvCodec.Words(Storage, vw);
            widest = Math.Max(widest, slotWords[i]);
        }
        BlockWords = blockSize * widest;
        SlotsPerBlock = SlotsPerBlockFor(BlockWords, slotWords, Storage == KvCodec.Q8 ? 16 : 8);
        long tokens = 0, fullBlocks = 0;
        foreach (int words in slotWords)
        {
            int perBlock = Math.Min(BlockWords / words, SlotsPerBlock);
            tokens += perBlock;
            fullBlocks += (maxBlocksPerHead * (long)blockSize + perBlock - 1) / perBlock;
        }
        _tokensPerBlockSum = tokens;
        _fullSequenceBlocks = fullBlocks;
    }

    /// <summary>How many slots a block has room for in the per-slot arrays (slotBytes each: position, metric, q8 scales):
    /// a head holds min(blockWords / its slot words, that many) tokens a block. More room lets narrow heads fill their
    /// blocks but costs every block its slots' bytes, so it is the choice, among the heads' own counts, that holds a token
    /// of every head in the fewest bytes in all (the fewest slots on ties).</summary>
    private static int SlotsPerBlockFor(int blockWords, int[] slotWords, int slotBytes)
    {
        int best = 0;
        double bestBytes = double.PositiveInfinity;
        foreach (int slots in slotWords.Select(w => blockWords / w).Distinct().Order())
        {
            double bytes = slotWords.Sum(w => (blockWords * 4.0 + slots * slotBytes) / Math.Min(blockWords / w, slots));
            if (bytes < bestBytes) (best, bestBytes) = (slots, bytes);
        }
        return best;
    }

    /// <summary>The layout of a model's cache: room in each head's table for the model's whole context, every head at the
    /// same widths (0: head_dim).</summary>
    public static PagedLayout For(ModelConfig config, int blockSize, Cache.KvStorageType storage = Cache.KvStorageType.F32,
        int keyWidth = 0, int valueWidth = 0) =>
        new(blockSize, config.HeadDim, config.Heads, config.KvHeads, config.Layers, (config.MaxSeqLen + blockSize - 1) / blockSize,
            storage, keyWidth, valueWidth);

    /// <summary>The layout of a model's cache with widths per (layer, KV head) (layer-major; 0: head_dim).</summary>
    public static PagedLayout For(ModelConfig config, int blockSize, Cache.KvStorageType storage, IReadOnlyList<int> keyWidths,
        IReadOnlyList<int> valueWidths) =>
        new(blockSize, config.HeadDim, config.Heads, config.KvHeads, config.Layers, (config.MaxSeqLen + blockSize - 1) / blockSize,
            storage, keyWidths, valueWidths);

    private readonly long _tokensPerBlockSum, _fullSequenceBlocks;

    /// <summary>Tokens (slots) per block of the widest head.</summary>
    public int BlockSize { get; }
    /// <summary>The model's attention head width: the width of queries, and of the attention score scale.</summary>
    public int HeadDim { get; }
    /// <summary>Query heads per layer.</summary>
    public int Heads { get; }
    /// <summary>KV heads per layer.</summary>
    public int KvHeads { get; }
    /// <summary>Decoder layers.</summary>
    public int Layers { get; }
    /// <summary>Entries of each head's block table.</summary>
    public int MaxBlocksPerHead { get; }
    /// <summary>How features are stored: a <see cref="Cache.KvStorageType"/> value, as <see cref="KvCodec"/> reads it.</summary>
    public int Storage { get; }
    /// <summary>32-bit words of packed keys and values in every block.</summary>
    public int BlockWords { get; }
    /// <summary>Entries of the per-slot arrays (position, metric, q8 scales) per block: the most tokens any head puts in one.</summary>
    public int SlotsPerBlock { get; }
    /// <summary>Whether each slot carries q8 scales (one for its key, one for its value).</summary>
    public bool HasScales => Storage == KvCodec.Q8;

    /// <summary>Query heads that read each KV head.</summary>
    public int GroupSize => Heads / KvHeads;
    /// <summary>Cached heads of one sequence: every (layer, KV head).</summary>
    public int HeadsPerSequence => Layers * KvHeads;

    /// <summary>Index of (sequence, layer, KV head) among all heads of the cache (block tables, lengths).</summary>
    public int HeadIndex(int sequence, int layer, int kvHead) => (sequence * Layers + layer) * KvHeads + kvHead;
    /// <summary>The KV head that query head h of a layer reads.</summary>
    public int KvHeadOf(int queryHead) => queryHead / GroupSize;

    /// <summary>Ints at the start of the tables buffer that hold the (layer, KV head)s' shapes.</summary>
    public int ShapeWords => 3 * HeadsPerSequence;
    /// <summary>Ints of the tables buffer for this many sequences: the shapes, then every head's table.</summary>
    public int TableWords(int sequences) => ShapeWords + sequences * HeadsPerSequence * MaxBlocksPerHead;
    /// <summary>The shape of a (layer, KV head) at these widths (0: head_dim): its tokens per block are as many slots of
    /// its packed widths as <see cref="BlockWords"/> holds, up to <see cref="SlotsPerBlock"/>.</summary>
    public HeadShape ShapeFor(int keyWidth, int valueWidth)
    {
        int kw = keyWidth == 0 ? HeadDim : keyWidth, vw = valueWidth == 0 ? HeadDim : valueWidth;
        int perBlock = BlockWords / (KvCodec.Words(Storage, kw) + KvCodec.Words(Storage, vw));
        return new HeadShape(kw, vw, Math.Min(perBlock, SlotsPerBlock), Storage);
    }
    /// <summary>Writes a (layer, KV head)'s shape into the head of the tables (<paramref name="headOfSequence"/>:
    /// layer * KvHeads + KV head).</summary>
    public static void WriteShape(Span<int> tables, int headOfSequence, HeadShape shape) =>
        (tables[3 * headOfSequence], tables[3 * headOfSequence + 1], tables[3 * headOfSequence + 2]) =
            (shape.KeyWidth, shape.ValueWidth, shape.TokensPerBlock);
    /// <summary>The shape of a head (any sequence's), from the head of the tables (a device view in kernels).</summary>
    public HeadShape Shape(ILGPU.ArrayView<int> tables, int head)
    {
        int at = 3 * (head % HeadsPerSequence);
        return new HeadShape(tables[at], tables[at + 1], tables[at + 2], Storage);
    }
    /// <summary>The shape of a head (any sequence's), from the head of the tables (a host array).</summary>
    public HeadShape Shape(ReadOnlySpan<int> tables, int head)
    {
        int at = 3 * (head % HeadsPerSequence);
        return new HeadShape(tables[at], tables[at + 1], tables[at + 2], Storage);
    }

    /// <summary>Entry of the block tables holding a head's i-th block.</summary>
    public int BlockEntry(int head, int block) => ShapeWords + head * MaxBlocksPerHead + block;
    /// <summary>Entry of the block tables holding the block of a head's logical slot index.</summary>
    public int TableIndex(int head, int index, HeadShape shape) => BlockEntry(head, index / shape.TokensPerBlock);
    /// <summary>The physical slot (index of the per-slot arrays) of a head's logical slot index, which lives in block (the
    /// table entry of that index).</summary>
    public long Slot(int block, int index, HeadShape shape) => (long)block * SlotsPerBlock + index % shape.TokensPerBlock;
    /// <summary>The word where the keys of the index-th slot of a block of a head of this shape start.</summary>
    public long KeyOffset(int block, int index, HeadShape shape) => (long)block * BlockWords + index * shape.KeyWords;
    /// <summary>The word where the values of the index-th slot of a block of a head of this shape start: after the
    /// block's keys.</summary>
    public long ValueOffset(int block, int index, HeadShape shape) =>
        (long)block * BlockWords + shape.TokensPerBlock * shape.KeyWords + index * shape.ValueWords;
    /// <summary>The word where the keys of a physical slot of a head of this shape start.</summary>
    public long KeyOffset(long slot, HeadShape shape) => KeyOffset((int)(slot / SlotsPerBlock), (int)(slot % SlotsPerBlock), shape);
    /// <summary>The word where the values of a physical slot of a head of this shape start.</summary>
    public long ValueOffset(long slot, HeadShape shape) =>
        ValueOffset((int)(slot / SlotsPerBlock), (int)(slot % SlotsPerBlock), shape);
    /// <summary>The logical slot a step's row writes: the head's length already counts the count tokens its sequence
    /// appends in this step, and the row is the offset-th of them.</summary>
    public static int AppendIndex(int headLength, int count, int offset) => headLength - count + offset;
    /// <summary>Slots a step's row attends to: every older slot, and the step's own tokens up to its own.</summary>
    public static int VisibleSlots(int headLength, int count, int offset) => headLength - count + offset + 1;
    /// <summary>Blocks one head of this shape needs for this many tokens.</summary>
    public static int BlocksFor(int tokens, HeadShape shape) => (tokens + shape.TokensPerBlock - 1) / shape.TokensPerBlock;
    /// <summary>Words of the block pool for this many blocks.</summary>
    public long PoolWords(long blocks) => blocks * BlockWords;

    /// <summary>Bytes of one block: its packed keys and values, and for each of its <see cref="SlotsPerBlock"/> slots a
    /// position (int) and metric (float), and with q8 two scales (floats).</summary>
    public long BytesPerBlock => (long)BlockWords * sizeof(int) + (long)SlotsPerBlock * (sizeof(int) + sizeof(float) + (HasScales ?
        2 * sizeof(float) : 0));
    /// <summary>Bytes one token of one head holds, on average over the (layer, KV head)s: a block's bytes over its tokens
    /// (exact where every head has the same widths).</summary>
    public int BytesPerSlot => (int)Math.Round((double)BytesPerBlock * HeadsPerSequence / _tokensPerBlockSum);
    /// <summary>Bytes of the block tables and lengths for this many sequences (the shapes included).</summary>
    public long MetadataBytes(int sequences) => (long)sequences * HeadsPerSequence * (MaxBlocksPerHead + 1) * sizeof(int) +
        ShapeWords * sizeof(int);
    /// <summary>Blocks that hold one sequence of the model's whole context in every head.</summary>
    public long FullSequenceBlocks => _fullSequenceBlocks;
    /// <summary>Bytes of blocks that hold one sequence of the model's whole context in every head.</summary>
    public long FullSequenceBytes => _fullSequenceBlocks * BytesPerBlock;
}
