using ILGPU;
using ILGPU.Algorithms;

namespace KvIlgpu.Kernels;

/// <summary>One row of a step, as the paged kernels see it: RowInfo[4r..4r+3] = (sequence slot, tokens this sequence
/// appends in this step, this row's index among them, original position). Head lengths on the device already include
/// the step's tokens, so row r appends at index length - count + offset and attends to length - count + offset + 1
/// slots: every older slot, and the step's own tokens causally.</summary>
internal static class PagedAttentionKernels
{
    /// <summary>What work item (row r, query head h) reads: its KV head's index and how many of its slots it sees.</summary>
    private static (int Head, int Visible) RowHead(PagedLayout p, ArrayView<int> lengths, ArrayView<int> rowInfo, int layer, int r, int h)
    {
        int head = p.HeadIndex(rowInfo[4 * r], layer, p.KvHeadOf(h));
        return (head, PagedLayout.VisibleSlots(lengths[head], rowInfo[4 * r + 1], rowInfo[4 * r + 2]));
    }

    /// <summary>The physical slot of a head's logical slot index.</summary>
    private static long SlotOf(PagedLayout p, ArrayView<int> tables, int head, HeadShape shape, int index) =>
        p.Slot(tables[p.TableIndex(head, index, shape)], index, shape);

    /// <summary>Where a head's logical slot index lies: its physical slot (position, metric, scales) and the first words of
    /// its keys and its values, from its block and its place in the block (no division by the slot arrays' room).</summary>
    private static (long Slot, long Keys, long Values) AddressOf(PagedLayout p, ArrayView<int> tables, int head, HeadShape shape,
        int index)
    {
        int block = tables[p.TableIndex(head, index, shape)], i = index % shape.TokensPerBlock;
        return (p.Slot(block, index, shape), p.KeyOffset(block, i, shape), p.ValueOffset(block, i, shape));
    }

    /// <summary>The q8 scale of a slot's key (part 0) or value (part 1); 1 for the other storage types.</summary>
    private static float ScaleOf(PagedLayout p, ArrayView<float> scales, long slot, int part) =>
        p.HasScales ? scales[2 * slot + part] : 1f;

    /// <summary>Writes each row's K and V ([rows, KvHeads * HeadDim]; the first key and value widths of each head's shape)
    /// into its own slot of every KV head, packed in the cache's storage type (with its q8 scales), with the token's
    /// position and a zero eviction metric. One thread per (row, KV head), so packed words are written whole.</summary>
    public static void Write(ArrayView<float> k, ArrayView<float> v, ArrayView<int> pool, ArrayView<int> positions,
        ArrayView<float> metric, ArrayView<float> scales, ArrayView<int> tables, ArrayView<int> lengths,
        ArrayView<int> rowInfo, int rows, int layer, PagedLayout p)
    {
        int d = p.HeadDim, total = rows * p.KvHeads;
        for (int i = GridStride.Start; i < total; i += GridStride.Step)
        {
            int h = i % p.KvHeads, r = i / p.KvHeads;
            int head = p.HeadIndex(rowInfo[4 * r], layer, h);
            var shape = p.Shape(tables, head);
            var (slot, keys, values) = AddressOf(p, tables, head, shape,
                PagedLayout.AppendIndex(lengths[head], rowInfo[4 * r + 1], rowInfo[4 * r + 2]));
            long source = (long)r * p.KvHeads * d + h * d;
            float keyScale = KvCodec.StoreRow(k, source, shape.KeyWidth, pool, keys, p.Storage);
            float valueScale = KvCodec.StoreRow(v, source, shape.ValueWidth, pool, values, p.Storage);
            if (p.HasScales) { scales[2 * slot] = keyScale; scales[2 * slot + 1] = valueScale; }
            positions[slot] = rowInfo[4 * r + 3];
            metric[slot] = 0f;
        }
    }

    /// <summary>Attention through per-head block tables, one warp per (row, query head). Each KV head is read up to
    /// its own length (heads differ after eviction) and its own shape's widths: the score is q's first key-width features
    /// against the stored key, scaled by 1/sqrt(HeadDim), and the output's first value-width features are the weighted stored values
    /// (the rest are zero). Stored features are widened in registers. When emitProbabilities is set,
    /// probs[(r * Heads + h) * stride + t] holds the softmax probability of the head's t-th slot (for the eviction
    /// metric), with no second pass over the cache; otherwise that buffer is only scratch.</summary>
    public static void Attention(ArrayView<float> q, ArrayView<int> pool, ArrayView<float> scales,
        ArrayView<int> tables, ArrayView<int> lengths, ArrayView<int> rowInfo, ArrayView<float> output,
        ArrayView<float> probs, int rows, int layer, int stride, int emitProbabilities, PagedLayout p)
    {
        int d = p.HeadDim, qDim = p.Heads * d;
        float scale = XMath.Rsqrt(d);
        for (int item = WarpReduce.GlobalWarp; item < rows * p.Heads; item += WarpReduce.WarpCount)
        {
            int r = item / p.Heads, h = item % p.Heads;
            var (head, len) = RowHead(p, lengths, rowInfo, layer, r, h);
            var shape = p.Shape(tables, head);
            long qb = (long)r * qDim + h * d, sb = (long)item * stride;
            float max = float.NegativeInfinity;
            for (int t = Warp.LaneIdx; t < len; t += Warp.WarpSize)
            {
                var (slot, keys, _) = AddressOf(p, tables, head, shape, t);
                float s = AttentionMath.ScaledScore(q, qb, pool, keys, shape.KeyWidth, p.Storage, ScaleOf(p, scales, slot, 0) * scale);
                probs[sb + t] = s;
                max = XMath.Max(max, s);
            }
            float inv = WarpReduce.ExpInPlace(probs, sb, len, max);
            for (int i = Warp.LaneIdx; i < d; i += Warp.WarpSize)
            {
                float acc = 0;
                for (int t = 0; t < len && i < shape.ValueWidth; t++)
                {
                    var (slot, _, values) = AddressOf(p, tables, head, shape, t);
                    acc += probs[sb + t] * KvCodec.Load(pool, values, i, p.Storage, ScaleOf(p, scales, slot, 1));
                }
                output[(long)r * qDim + h * d + i] = acc * inv;
            }
            if (emitProbabilities != 0)
            {
                Warp.Barrier();
                for (int t = Warp.LaneIdx; t < len; t += Warp.WarpSize) probs[sb + t] *= inv;
            }
        }
    }

    /// <summary>The same attention with one thread per (row, query head) and no warp shuffles, for ILGPU's CPU
    /// accelerator, where each shuffle is a barrier between simulated threads.</summary>
    public static void AttentionThreadPerHead(ArrayView<float> q, ArrayView<int> pool, ArrayView<float> scales,
        ArrayView<int> tables, ArrayView<int> lengths, ArrayView<int> rowInfo, ArrayView<float> output,
        ArrayView<float> probs, int rows, int layer, int stride, int emitProbabilities, PagedLayout p)
    {
        int d = p.HeadDim, qDim = p.Heads * d;
        float scale = XMath.Rsqrt(d);
        for (int item = GridStride.Start; item < rows * p.Heads; item += GridStride.Step)
        {
            int r = item / p.Heads, h = item % p.Heads;
            var (head, len) = RowHead(p, lengths, rowInfo, layer, r, h);
            var shape = p.Shape(tables, head);
            long qb = (long)r * qDim + h * d, sb = (long)item * stride;
            float max = float.NegativeInfinity;
            for (int t = 0; t < len; t++)
            {
                var (slot, keys, _) = AddressOf(p, tables, head, shape, t);
                float s = AttentionMath.ScaledScore(q, qb, pool, keys, shape.KeyWidth, p.Storage, ScaleOf(p, scales, slot, 0) * scale);
                probs[sb + t] = s;
                max = XMath.Max(max, s);
            }
            float sum = 0;
            for (int t = 0; t < len; t++) { float e = XMath.Exp(probs[sb + t] - max); probs[sb + t] = e; sum += e; }
            float inv = 1f / sum;
            for (int i = 0; i < d; i++) output[(long)r * qDim + h * d + i] = 0f;
            for (int t = 0; t < len; t++)
            {
                var (slot, _, vb) = AddressOf(p, tables, head, shape, t);
                float vScale = ScaleOf(p, scales, slot, 1);
                float w = probs[sb + t] * inv;
                for (int i = 0; i < shape.ValueWidth; i++)
                    output[(long)r * qDim + h * d + i] += w * KvCodec.Load(pool, vb, i, p.Storage, vScale);
                if (emitProbabilities != 0) probs[sb + t] = w;
            }
        }
    }

    /// <summary>Compaction moves: move i copies physical slot moves[3i] to moves[3i+1] of head moves[3i+2] (its packed K and V
    /// at that head's shape, position, metric, scales). Sources and destinations are disjoint, so the moves run in any
    /// order. One thread per (move, word of the widest slot).</summary>
    public static void MoveSlots(ArrayView<int> pool, ArrayView<int> positions, ArrayView<float> metric, ArrayView<float> scales,
        ArrayView<int> tables, ArrayView<int> moves, int count, PagedLayout p)
    {
        int words = p.BlockWords / p.BlockSize;
        for (int i = GridStride.Start; i < count * words; i += GridStride.Step)
        {
            int m = i / words, f = i % words;
            long from = moves[3 * m], to = moves[3 * m + 1];
            var shape = p.Shape(tables, moves[3 * m + 2]);
            if (f < shape.KeyWords) pool[p.KeyOffset(to, shape) + f] = pool[p.KeyOffset(from, shape) + f];
            if (f < shape.ValueWords) pool[p.ValueOffset(to, shape) + f] = pool[p.ValueOffset(from, shape) + f];
            if (f != 0) continue;
            positions[to] = positions[from];
            metric[to] = metric[from];
            if (p.HasScales) { scales[2 * to] = scales[2 * from]; scales[2 * to + 1] = scales[2 * from + 1]; }
        }
    }

    /// <summary>SPEC 2, decode accumulation: for every row r, KV head g and slot t the row saw, metric[slot] += sum over
    /// the query heads q of group g of p[r, q, t]^2 (modes[r] = Squared) or p[r, q, t] (Plain); rows whose mode is None
    /// add nothing. probs holds the probabilities the paged attention kernel emitted ([rows * Heads, stride]).</summary>
    public static void AccumulateMetric(ArrayView<float> probs, ArrayView<int> tables, ArrayView<int> lengths, ArrayView<int> rowInfo,
        ArrayView<int> modes, ArrayView<float> metric, int rows, int layer, int stride, PagedLayout p)
    {
        int group = p.GroupSize;
        long total = (long)rows * p.KvHeads * stride;
        for (long i = GridStride.Start; i < total; i += GridStride.Step)
        {
            int t = (int)(i % stride), g = (int)(i / stride % p.KvHeads), r = (int)(i / stride / p.KvHeads);
            int mode = modes[r];
            if (mode == 0) continue; // MetricAccumulation.None
            var (head, visible) = RowHead(p, lengths, rowInfo, layer, r, g * group);
            if (t >= visible) continue;
            float sum = 0;
            for (int q = g * group; q < (g + 1) * group; q++)
            {
                float v = probs[((long)r * p.Heads + q) * stride + t];
                sum += mode == 2 ? v * v : v; // MetricAccumulation.Squared, else Plain
            }
            metric[SlotOf(p, tables, head, p.Shape(tables, head), t)] += sum;
        }
    }
}
