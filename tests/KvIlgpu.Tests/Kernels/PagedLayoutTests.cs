using KvIlgpu.Kernels;
using KvIlgpu.Tests.Support;

namespace KvIlgpu.Tests.Kernels;

/// <summary>The paged layout's arithmetic against closed forms written out by hand (SPEC 1).</summary>
public class PagedLayoutTests
{
    // 3 layers, 2 KV heads, 6 query heads of width 8, a 100-token context in blocks of 16: 7 blocks per head.
    private static readonly PagedLayout Layout = PagedLayout.For(TestModels.Config(dim: 48, layers: 3, heads: 6, kvHeads: 2, seq: 100),
        blockSize: 16);

    [Fact]
    public void Dimensions_come_from_the_model()
    {
        Assert.Equal((16, 8, 6, 2, 3, 7), (Layout.BlockSize, Layout.HeadDim, Layout.Heads, Layout.KvHeads, Layout.Layers,
            Layout.MaxBlocksPerHead));
        Assert.Equal((3, 6), (Layout.GroupSize, Layout.HeadsPerSequence));
    }

    [Fact]
    public void Heads_are_numbered_sequence_then_layer_then_kv_head()
    {
        Assert.Equal(0, Layout.HeadIndex(0, 0, 0));
        Assert.Equal(1, Layout.HeadIndex(0, 0, 1));
        Assert.Equal(2, Layout.HeadIndex(0, 1, 0));
        Assert.Equal(6 + 2 * 2 + 1, Layout.HeadIndex(1, 2, 1));
        Assert.Equal([0, 0, 0, 1, 1, 1], Enumerable.Range(0, 6).Select(Layout.KvHeadOf));
    }

    [Fact]
    public void Slots_follow_the_block_tables()
    {
        // The tables start with 6 heads' shapes (3 ints each); logical slot 37 of head 5 is slot 5 of the head's third
        // block (entry 18 + 5 * 7 + 2). A block holds 16 keys of 8 floats, then 16 values.
        var shape = Layout.ShapeFor(0, 0);
        Assert.Equal((8, 8, 16, 8, 8), (shape.KeyWidth, shape.ValueWidth, shape.TokensPerBlock, shape.KeyWords, shape.ValueWords));
        Assert.Equal(18, Layout.ShapeWords);
        Assert.Equal(18 + 37, Layout.BlockEntry(5, 2));
        Assert.Equal(18 + 37, Layout.TableIndex(5, 37, shape));
        Assert.Equal(11 * 16 + 5, Layout.Slot(11, 37, shape));
        Assert.Equal(11 * 256 + 5 * 8, Layout.KeyOffset(Layout.Slot(11, 37, shape), shape));
        Assert.Equal(11 * 256 + 128 + 5 * 8, Layout.ValueOffset(Layout.Slot(11, 37, shape), shape));
        Assert.Equal((0, 1, 1, 2), (PagedLayout.BlocksFor(0, shape), PagedLayout.BlocksFor(1, shape), PagedLayout.BlocksFor(16, shape),
            PagedLayout.BlocksFor(17, shape)));
    }

    private static readonly int[] MixedKeyWidths = [8, 2, 4, 1, 8, 5], MixedValueWidths = [8, 4, 4, 1, 1, 5];

    [Fact]
    public void Heads_of_narrower_widths_hold_more_tokens_in_a_block_of_the_same_size()
    {
        // Widths per (layer, KV head): the widest head (8 + 8 f32 features) sets the block at 16 x 16 = 256 words; a head
        // of 2 + 4 features fits 256 / 6 = 42 tokens, 4 + 4 fits 32, 8 + 1 fits 28, 5 + 5 fits 25, and 1 + 1 would fit
        // 128. Room for S slots a block costs 8 bytes each (position, metric), so a token of every head costs
        // sum over heads of (1024 + 8 S) / min(fit, S) bytes: S = 128 gives 411.8, 42 gives 295.2, 32 gives 297.0,
        // 28 gives 306.2, 25 and 16 more; so the per-slot arrays hold 42 a block and the 1 + 1 head holds 42, not 128.
        var layout = new PagedLayout(16, 8, 6, 2, 3, 7, global::KvIlgpu.Cache.KvStorageType.F32, MixedKeyWidths, MixedValueWidths);
        Assert.Equal((256, 42), (layout.BlockWords, layout.SlotsPerBlock));
        var narrow = layout.ShapeFor(2, 4);
        Assert.Equal((42, 2, 4), (narrow.TokensPerBlock, narrow.KeyWords, narrow.ValueWords));
        Assert.Equal(32, layout.ShapeFor(4, 4).TokensPerBlock);
        Assert.Equal(28, layout.ShapeFor(8, 1).TokensPerBlock);
        Assert.Equal(42, layout.ShapeFor(1, 1).TokensPerBlock);
        // Slot 50 of such a head is slot 8 of its second block; its keys and values lie in that block's 256 words.
        long slot = layout.Slot(3, 50, narrow);
        Assert.Equal(3 * 42 + 8, slot);
        Assert.Equal(3 * 256 + 8 * 2, layout.KeyOffset(slot, narrow));
        Assert.Equal(3 * 256 + 42 * 2 + 8 * 4, layout.ValueOffset(slot, narrow));
        Assert.Equal((3 * 256 + 8 * 2, 3 * 256 + 42 * 2 + 8 * 4), (layout.KeyOffset(3, 8, narrow), layout.ValueOffset(3, 8, narrow)));
        Assert.Equal(3, PagedLayout.BlocksFor(100, narrow));
        // A block's bytes: its words and 42 positions and metrics. One token of one head: the mean over the six heads
        // of a block's bytes over its tokens per block.
        Assert.Equal(256 * 4 + 42 * 8, layout.BytesPerBlock);
        Assert.Equal((int)Math.Round(1360.0 * 6 / (16 + 42 + 32 + 42 + 28 + 25)), layout.BytesPerSlot);
        // The shapes go at the head of the tables, three ints each.
        var tables = new int[layout.TableWords(1)];
        PagedLayout.WriteShape(tables, 1, narrow);
        Assert.Equal([2, 4, 42], tables[3..6]);
        Assert.Equal(42, layout.Shape(tables, 6 + 1).TokensPerBlock); // head 1 of the second sequence
    }

    [Fact]
    public void A_step_row_writes_after_the_older_slots_and_sees_itself()
    {
        // A head of length 20 after a step that appended 4 tokens: its rows write slots 16..19 and see 17..20 slots.
        Assert.Equal([16, 17, 18, 19], Enumerable.Range(0, 4).Select(o => PagedLayout.AppendIndex(20, 4, o)));
        Assert.Equal([17, 18, 19, 20], Enumerable.Range(0, 4).Select(o => PagedLayout.VisibleSlots(20, 4, o)));
    }

    [Fact]
    public void Bytes_count_keys_values_positions_metrics_and_tables()
    {
        Assert.Equal(2 * 16 * 8 * 4 + 16 * (4 + 4), Layout.BytesPerBlock);
        Assert.Equal(3 * 6 * (7 + 1) * 4 + 18 * 4, Layout.MetadataBytes(3));
        Assert.Equal(6 * 7 * Layout.BytesPerBlock, Layout.FullSequenceBytes);
        Assert.Equal(5 * 16 * 8 * 2, Layout.PoolWords(5));
        Assert.Equal(Layout.BytesPerBlock / 16, Layout.BytesPerSlot);
    }
}
