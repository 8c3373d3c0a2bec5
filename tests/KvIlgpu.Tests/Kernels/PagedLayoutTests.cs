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
        // Logical slot 37 of head 5 is slot 5 of the head's third block (entry 5 * 7 + 2).
        Assert.Equal(37, Layout.BlockEntry(5, 2));
        Assert.Equal(37, Layout.TableIndex(5, 37));
        Assert.Equal(11 * 16 + 5, Layout.Slot(11, 37));
        Assert.Equal((11 * 16 + 5) * 8, Layout.KeyOffset(Layout.Slot(11, 37)));
        Assert.Equal(Layout.KeyOffset(42), Layout.ValueOffset(42));
        Assert.Equal((8, 8), (Layout.KeyWidth(3), Layout.ValueWidth(3)));
        Assert.Equal((0, 1, 1, 2), (Layout.BlocksFor(0), Layout.BlocksFor(1), Layout.BlocksFor(16), Layout.BlocksFor(17)));
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
        Assert.Equal(3 * 6 * (7 + 1) * 4, Layout.MetadataBytes(3));
        Assert.Equal(6 * 7 * Layout.BytesPerBlock, Layout.FullSequenceBytes);
        Assert.Equal(5 * 16 * 8, Layout.KeyPoolWords(5));
    }
}
