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

    private static long SlotOf(PagedLayout p, ArrayView<int> tables, int head, int index) => p.Slot(tables[p.TableIndex(head, index)],
        index);

    /// <summary>Writes each row's K and V ([rows, KvHeads * HeadDim]) into its own slot of every KV head, with the
    /// token's position and a zero eviction metric.</summary>
    public static void Write(ArrayView<float> k, ArrayView<float> v, ArrayView<float> kPool, ArrayView<float> vPool,
        ArrayView<int> positions, ArrayView<float> metric, ArrayView<int> tables, ArrayView<int> lengths,
        ArrayView<int> rowInfo, int rows, int layer, PagedLayout p)
    {
        int d = p.HeadDim, total = rows * p.KvHeads * d;
        for (int i = GridStride.Start; i < total; i += GridStride.Step)
        {
            int f = i % d, rh = i / d, h = rh % p.KvHeads, r = rh / p.KvHeads;
            int head = p.HeadIndex(rowInfo[4 * r], layer, h);
            long slot = SlotOf(p, tables, head, PagedLayout.AppendIndex(lengths[head], rowInfo[4 * r + 1], rowInfo[4 * r + 2]));
            if (f < p.KeyWidth(head)) kPool[p.KeyOffset(slot) + f] = k[(long)r * p.KvHeads * d + h * d + f];
            if (f < p.ValueWidth(head)) vPool[p.ValueOffset(slot) + f] = v[(long)r * p.KvHeads * d + h * d + f];
            if (f == 0) { positions[slot] = rowInfo[4 * r + 3]; metric[slot] = 0f; }
        }
    }

    /// <summary>Attention through per-head block tables, one warp per (row, query head). Each KV head is read up to
    /// its own length (heads differ after eviction). When emitProbabilities is set, probs[(r * Heads + h) * stride + t]
    /// holds the softmax probability of the head's t-th slot (for the eviction metric), with no second pass over
    /// the cache; otherwise that buffer is only scratch.</summary>
    public static void Attention(ArrayView<float> q, ArrayView<float> kPool, ArrayView<float> vPool,
        ArrayView<int> tables, ArrayView<int> lengths, ArrayView<int> rowInfo, ArrayView<float> output,
        ArrayView<float> probs, int rows, int layer, int stride, int emitProbabilities, PagedLayout p)
    {
        int d = p.HeadDim, qDim = p.Heads * d;
        float scale = XMath.Rsqrt(d);
        for (int item = WarpReduce.GlobalWarp; item < rows * p.Heads; item += WarpReduce.WarpCount)
        {
            int r = item / p.Heads, h = item % p.Heads;
            var (head, len) = RowHead(p, lengths, rowInfo, layer, r, h);
            long qb = (long)r * qDim + h * d, sb = (long)item * stride;
            float max = float.NegativeInfinity;
            for (int t = Warp.LaneIdx; t < len; t += Warp.WarpSize)
            {
                float s = AttentionMath.ScaledScore(q, qb, kPool, p.KeyOffset(SlotOf(p, tables, head, t)), p.KeyWidth(head), scale);
                probs[sb + t] = s;
                max = XMath.Max(max, s);
            }
            float inv = WarpReduce.ExpInPlace(probs, sb, len, max);
            for (int i = Warp.LaneIdx; i < p.ValueWidth(head); i += Warp.WarpSize)
            {
                float acc = 0;
                for (int t = 0; t < len; t++) acc += probs[sb + t] * vPool[p.ValueOffset(SlotOf(p, tables, head, t)) + i];
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
    public static void AttentionThreadPerHead(ArrayView<float> q, ArrayView<float> kPool, ArrayView<float> vPool,
        ArrayView<int> tables, ArrayView<int> lengths, ArrayView<int> rowInfo, ArrayView<float> output,
        ArrayView<float> probs, int rows, int layer, int stride, int emitProbabilities, PagedLayout p)
    {
        int d = p.HeadDim, qDim = p.Heads * d;
        float scale = XMath.Rsqrt(d);
        for (int item = GridStride.Start; item < rows * p.Heads; item += GridStride.Step)
        {
            int r = item / p.Heads, h = item % p.Heads;
            var (head, len) = RowHead(p, lengths, rowInfo, layer, r, h);
            long qb = (long)r * qDim + h * d, sb = (long)item * stride;
            float max = float.NegativeInfinity;
            for (int t = 0; t < len; t++)
            {
                float s = AttentionMath.ScaledScore(q, qb, kPool, p.KeyOffset(SlotOf(p, tables, head, t)), p.KeyWidth(head), scale);
                probs[sb + t] = s;
                max = XMath.Max(max, s);
            }
            float sum = 0;
            for (int t = 0; t < len; t++) { float e = XMath.Exp(probs[sb + t] - max); probs[sb + t] = e; sum += e; }
            float inv = 1f / sum;
            for (int i = 0; i < d; i++) output[(long)r * qDim + h * d + i] = 0f;
            for (int t = 0; t < len; t++)
            {
                long vb = p.ValueOffset(SlotOf(p, tables, head, t));
                float w = probs[sb + t] * inv;
                for (int i = 0; i < p.ValueWidth(head); i++) output[(long)r * qDim + h * d + i] += w * vPool[vb + i];
                if (emitProbabilities != 0) probs[sb + t] = w;
            }
        }
    }

    /// <summary>Compaction moves: pair i copies physical slot pairs[2i] to pairs[2i+1] (K, V, position, metric).
    /// Sources and destinations are disjoint, so the moves run in any order.</summary>
    public static void MoveSlots(ArrayView<float> kPool, ArrayView<float> vPool, ArrayView<int> positions, ArrayView<float> metric,
        ArrayView<int> pairs, int count, PagedLayout p)
    {
        int d = p.HeadDim;
        for (int i = GridStride.Start; i < count * d; i += GridStride.Step)
        {
            int m = i / d, f = i % d;
            long from = pairs[2 * m], to = pairs[2 * m + 1];
            kPool[p.KeyOffset(to) + f] = kPool[p.KeyOffset(from) + f];
            vPool[p.ValueOffset(to) + f] = vPool[p.ValueOffset(from) + f];
            if (f == 0) { positions[to] = positions[from]; metric[to] = metric[from]; }
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
            metric[SlotOf(p, tables, head, t)] += sum;
        }
    }
}
