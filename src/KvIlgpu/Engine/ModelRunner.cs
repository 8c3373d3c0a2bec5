using KvIlgpu.Cache;
using KvIlgpu.Compression;
using KvIlgpu.Models;

namespace KvIlgpu.Engine;

/// <summary>The execute step of the scheduler: runs a step's rows through the model over the paged cache (with the
/// metric work the rows ask for) and triggers each sequence's compression: after its prefill (seed the metric from the
/// observation window, then compress) and every Interval decode steps after that, or when blocks run short.</summary>
internal sealed class ModelRunner(LlamaModel model, PagedKvCache cache)
{
    /// <summary>The logits of the step's logit rows, [LogitRows.Count, vocabulary].</summary>
    public float[] Run(StepBatch batch) => model.ForwardBatch(cache, batch.Rows.ToArray(), batch.LogitRows.ToArray(), batch.Metric);

    /// <summary>A prefill window for a compressing sequence being admitted (null when it does not compress).</summary>
    public ObservationWindowMetric? NewWindow(Sequence s) =>
        s.Compresses ? new ObservationWindowMetric(model.Config.Layers, model.Config.Heads, s.Tokens.Count) : null;

    /// <summary>Compression after a sequence's step: seed the metric and compress when its prefill has just finished,
    /// else compress every Interval decode steps.</summary>
    public void AfterForward(Sequence s)
    {
        if (s.ThinKQueries != null) PruneKeyChannels(s);
        if (!s.Compresses) return;
        var c = s.Options.Compression!;
        if (s.Window != null)
        {
            SequenceCompressor.SeedMetric(cache, s.Slot!.Value, s.Window, c, model.Config.GroupSize);
            s.Window = null;
            Compress(s);
        }
        else if (++s.DecodeStepsSinceCompression >= c.Interval) Compress(s);
    }

    /// <summary>ThinK once the prefill is done: scores every (layer, KV head)'s key channels from the window queries and
    /// the cached keys, zeroes the pruned channels of the cached keys, and keeps the mask for the keys written after.
    /// </summary>
    private void PruneKeyChannels(Sequence s)
    {
        var c = model.Config;
        int slot = s.Slot!.Value;
        var keys = Enumerable.Range(0, c.Layers).Select(l => (IReadOnlyList<float[][]>)Enumerable.Range(0, c.KvHeads)
            .Select(h => cache.ReadKeys(slot, l, h)).ToList()).ToList();
        var masks = s.Options.ThinK!.Masks(s.ThinKQueries!, keys, c.Heads, c.KvHeads, c.HeadDim);
        for (int l = 0; l < c.Layers; l++)
            for (int h = 0; h < c.KvHeads; h++) cache.ScaleKeys(slot, l, h, masks[l][(h * c.HeadDim)..((h + 1) * c.HeadDim)]);
        s.KeyMask = masks;
        s.ThinKQueries = null;
    }

    /// <summary>Compresses one running sequence to its budget now; returns the KVs evicted.</summary>
    public int Compress(Sequence s)
    {
        int evicted = SequenceCompressor.Compress(cache, s.Slot!.Value, s.Cached, s.Options.Compression!, s.PromptLength);
        s.Usage.Evicted += evicted;
        s.DecodeStepsSinceCompression = 0;
        return evicted;
    }
}
