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

    /// <summary>Compresses one running sequence to its budget now; returns the KVs evicted.</summary>
    public int Compress(Sequence s)
    {
        int evicted = SequenceCompressor.Compress(cache, s.Slot!.Value, s.Cached, s.Options.Compression!, s.PromptLength);
        s.Usage.Evicted += evicted;
        s.DecodeStepsSinceCompression = 0;
        return evicted;
    }
}
