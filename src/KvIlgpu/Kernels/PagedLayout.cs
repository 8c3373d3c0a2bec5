using KvIlgpu.Models;

namespace KvIlgpu.Kernels;

/// <summary>Geometry of the paged KV cache (SPEC 1), the one place its index arithmetic is written; the kernels and
/// the host code both call these methods. A physical block holds <see cref="BlockSize"/> slots of ONE (layer, KV head).
/// Heads are numbered (sequence, layer, KV head) in that order (<see cref="HeadIndex"/>); entry
/// <see cref="TableIndex"/> of the block tables is the block holding a head's logical slot, and <see cref="Slot"/> is
/// that slot's physical index, which addresses the per-slot position and metric. Where a slot's keys and values lie in
/// the K and V pools, and how wide they are, only <see cref="KeyOffset"/>, <see cref="ValueOffset"/>,
/// <see cref="KeyWidth"/> and <see cref="ValueWidth"/> say, and how each feature is packed into the pools' 32-bit words only
/// <see cref="Storage"/> and <see cref="KvCodec"/> say. Every head of a cache stores the same widths today: HeadDim, or
/// the largest ranks of a MatryoshkaKV projection (its coordinates, narrower heads padded with zeros).</summary>
internal readonly struct PagedLayout
{
    /// <summary>A layout from its dimensions; see <see cref="For"/> for a model's.</summary>
    /// <param name="blockSize">Tokens (slots) per block.</param>
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
    {
        BlockSize = blockSize; HeadDim = headDim; Heads = heads; KvHeads = kvHeads; Layers = layers; MaxBlocksPerHead = maxBlocksPerHead;
        if (storage == Cache.KvStorageType.Auto) throw new ArgumentException("resolve Auto to a storage type first", nameof(storage));
        Storage = (int)storage;
        _keyWidth = keyWidth == 0 ? headDim : keyWidth;
        _valueWidth = valueWidth == 0 ? headDim : valueWidth;
        if (_keyWidth < 1 || _keyWidth > headDim || _valueWidth < 1 || _valueWidth > headDim)
            throw new ArgumentOutOfRangeException(nameof(keyWidth), $"cached widths must be 1..{headDim}");
        KeyWords = KvCodec.Words(Storage, _keyWidth);
        ValueWords = KvCodec.Words(Storage, _valueWidth);
    }

    /// <summary>The layout of a model's cache: room in each head's table for the model's whole context.</summary>
    public static PagedLayout For(ModelConfig config, int blockSize, Cache.KvStorageType storage = Cache.KvStorageType.F32,
        int keyWidth = 0, int valueWidth = 0) =>
        new(blockSize, config.HeadDim, config.Heads, config.KvHeads, config.Layers, (config.MaxSeqLen + blockSize - 1) / blockSize,
            storage, keyWidth, valueWidth);

    private readonly int _keyWidth, _valueWidth;

    /// <summary>Tokens (slots) per block.</summary>
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
    /// <summary>32-bit words of one slot's keys.</summary>
    public int KeyWords { get; }
    /// <summary>32-bit words of one slot's values.</summary>
    public int ValueWords { get; }
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
    /// <summary>Entry of the block tables holding a head's i-th block.</summary>
    public int BlockEntry(int head, int block) => head * MaxBlocksPerHead + block;
    /// <summary>Entry of the block tables holding the block of a head's logical slot index.</summary>
    public int TableIndex(int head, int index) => BlockEntry(head, index / BlockSize);
    /// <summary>The physical slot of logical slot index, which lives in block (the table entry of that index).</summary>
    public long Slot(int block, int index) => (long)block * BlockSize + index % BlockSize;
    /// <summary>The logical slot a step's row writes: the head's length already counts the count tokens its sequence
    /// appends in this step, and the row is the offset-th of them.</summary>
    public static int AppendIndex(int headLength, int count, int offset) => headLength - count + offset;
    /// <summary>Slots a step's row attends to: every older slot, and the step's own tokens up to its own.</summary>
    public static int VisibleSlots(int headLength, int count, int offset) => headLength - count + offset + 1;
    /// <summary>Blocks one head needs for this many tokens.</summary>
    public int BlocksFor(int tokens) => (tokens + BlockSize - 1) / BlockSize;

    /// <summary>Features of K each slot of a head stores.</summary>
    public int KeyWidth(int head) => _keyWidth;
    /// <summary>Features of V each slot of a head stores.</summary>
    public int ValueWidth(int head) => _valueWidth;
    /// <summary>The word where a physical slot's keys start in the K pool.</summary>
    public long KeyOffset(long slot) => slot * KeyWords;
    /// <summary>The word where a physical slot's values start in the V pool.</summary>
    public long ValueOffset(long slot) => slot * ValueWords;
    /// <summary>Words of the K pool for this many blocks.</summary>
    public long KeyPoolWords(long blocks) => blocks * BlockSize * KeyWords;
    /// <summary>Words of the V pool for this many blocks.</summary>
    public long ValuePoolWords(long blocks) => blocks * BlockSize * ValueWords;

    /// <summary>Bytes one slot (one token of one head) holds: its packed K and V, its position (int) and metric (float),
    /// and with q8 its two scales (floats).</summary>
    public int BytesPerSlot => (KeyWords + ValueWords) * sizeof(int) + sizeof(int) + sizeof(float) + (HasScales ? 2 * sizeof(float) : 0);
    /// <summary>Bytes of one block: <see cref="BytesPerSlot"/> for each of its slots.</summary>
    public long BytesPerBlock => (long)BlockSize * BytesPerSlot;
    /// <summary>Bytes of the block tables and lengths for this many sequences.</summary>
    public long MetadataBytes(int sequences) => (long)sequences * HeadsPerSequence * (MaxBlocksPerHead + 1) * sizeof(int);
    /// <summary>Bytes of blocks that hold one sequence of the model's whole context in every head.</summary>
    public long FullSequenceBytes => (long)HeadsPerSequence * MaxBlocksPerHead * BytesPerBlock;
}
