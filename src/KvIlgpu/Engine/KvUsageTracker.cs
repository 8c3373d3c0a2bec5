using KvIlgpu.Cache;

namespace KvIlgpu.Engine;

/// <summary>Adds up what one request holds in the cache while it runs (see <see cref="KvUsage"/>).</summary>
internal sealed class KvUsageTracker(int layers)
{
    private readonly double[] _keptPerLayer = new double[layers];
    private int _peakBlocks, _steps;
    private long _blockSteps;

    public long Evicted { get; set; }

    /// <summary>After blocks were reserved for the sequence: its peak so far.</summary>
    public void Reserved(PagedKvCache cache, int slot) => _peakBlocks = Math.Max(_peakBlocks, cache.BlocksHeld(slot));

    /// <summary>After a step gave the sequence a token (and its compression ran).</summary>
    public void Step(PagedKvCache cache, int slot)
    {
        _steps++;
        _blockSteps += cache.BlocksHeld(slot);
        var layout = cache.Layout;
        for (int layer = 0; layer < layout.Layers; layer++)
            for (int head = 0; head < layout.KvHeads; head++)
                _keptPerLayer[layer] += cache.Length(slot, layer, head) / (double)layout.KvHeads;
    }

    public KvUsage ToUsage(PagedKvCache cache, int blocksHeld) =>
        new(cache.BytesPerBlock, blocksHeld, _peakBlocks, _steps, _blockSteps, Evicted, [.. _keptPerLayer]);
}
