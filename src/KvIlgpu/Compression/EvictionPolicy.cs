using KvIlgpu.Cache;

namespace KvIlgpu.Compression;

/// <summary>An eviction policy: how each cached KV is scored (which attention feeds the metric) plus a selection rule
/// (how the budget is split across heads and layers). Every policy evicts from the same paged cache, so memory is
/// comparable. Policies return plans; the Compactor carries them out.</summary>
public abstract class EvictionPolicy
{
    public abstract string Name { get; }
    /// <summary>Squared (L2) or plain (L1) attention in the metric.</summary>
    public virtual bool Squared => false;
    /// <summary>Default observation window for the prefill metric (0: all prompt queries).</summary>
    public virtual int DefaultObservationWindow => 8;
    /// <summary>Max-pool width of the prefill metric (1: none).</summary>
    public virtual int PoolKernel => 7;
    /// <summary>Whether decode queries keep adding to the metric.</summary>
    public virtual bool AccumulateDuringDecode => false;
    /// <summary>Attention sinks (first positions) always kept.</summary>
    public virtual int Sinks => 0;

    /// <summary>The KVs to evict from every head of one sequence.</summary>
    public abstract EvictionPlan Plan(IReadOnlyList<HeadSlots> heads, int blockSize, int sequenceLength, EvictionBudget budget, int layers);

    /// <summary>Per-head selection shared by the baselines: head i keeps its keep[i] best-scoring KVs (protected ones
    /// always), evicting the lowest first; ties go to the lower slot index.</summary>
    protected static EvictionPlan KeepPerHead(IReadOnlyList<HeadSlots> heads, IReadOnlyList<int> keep, Func<HeadSlots, int, bool> isProtected,
        Func<HeadSlots, int, float> score)
    {
        var evicted = new int[heads.Count][];
        for (int i = 0; i < heads.Count; i++)
        {
            var h = heads[i];
            var candidates = Enumerable.Range(0, h.Length).Where(t => !isProtected(h, t))
                .OrderBy(t => score(h, t)).ThenBy(t => t).ToList();
            int excess = Math.Max(0, h.Length - keep[i]);
            evicted[i] = candidates.Take(Math.Min(excess, candidates.Count)).ToArray();
        }
        return new EvictionPlan(evicted);
    }

    protected static Func<HeadSlots, int, bool> Protection(int sequenceLength, EvictionBudget budget, int sinks) =>
        (h, t) => h.Positions[t] >= sequenceLength - budget.ProtectedWindow || h.Positions[t] < Math.Max(sinks, budget.Sinks);

    /// <summary>Per-head keep count for a budget: MaxCacheTokens, or KeepRate of each head's evictable KVs.</summary>
    protected static int[] UniformKeep(IReadOnlyList<HeadSlots> heads, EvictionBudget budget, Func<HeadSlots, int, bool> isProtected) =>
        heads.Select(h => budget.MaxCacheTokens is int per ? per
            : h.Length - Enumerable.Range(0, h.Length).Count(t => !isProtected(h, t))
              + (int)Math.Ceiling(budget.KeepRate!.Value * Enumerable.Range(0, h.Length).Count(t => !isProtected(h, t)))).ToArray();

    public static readonly IReadOnlyDictionary<string, EvictionPolicy> Registry = new EvictionPolicy[]
    {
        new KvCompressPolicy(), new KvCompressUniformPolicy(), new KvCompressEvenLayerPolicy(), new StreamingLlmPolicy(), new H2oPolicy(), new SnapKvPolicy(),
        new PyramidKvPolicy(), new AdaKvPolicy(),
    }.ToDictionary(p => p.Name);
}

/// <summary>KV-Compress (Rehg 2024, arXiv 2410.00161): squared attention, observation window 8, max-pool 7, accumulated
/// during decode; block-granular chunks ranked across all heads and layers (SPEC 3).</summary>
public sealed class KvCompressPolicy : EvictionPolicy
{
    public override string Name => "kvcompress";
    public override bool Squared => true;
    public override bool AccumulateDuringDecode => true;
    public override EvictionPlan Plan(IReadOnlyList<HeadSlots> heads, int blockSize, int sequenceLength, EvictionBudget budget, int layers) =>
        EvictionPlanner.Plan(heads, blockSize, sequenceLength, budget);
}

/// <summary>Ablation of KV-Compress (SPEC 3 "even-per-layer"): chunks are ranked across the KV heads of each layer
/// only, and every layer gets the same share of the budget, so heads within a layer still compete but layers do not.</summary>
public sealed class KvCompressEvenLayerPolicy : EvictionPolicy
{
    public override string Name => "kvcompress-layer";
    public override bool Squared => true;
    public override bool AccumulateDuringDecode => true;

    public override EvictionPlan Plan(IReadOnlyList<HeadSlots> heads, int blockSize, int sequenceLength, EvictionBudget budget, int layers)
    {
        var evicted = new int[heads.Count][];
        foreach (var layer in Enumerable.Range(0, heads.Count).GroupBy(i => heads[i].Layer))
        {
            var members = layer.ToList();
            var plan = EvictionPlanner.Plan(members.Select(i => heads[i]).ToList(), blockSize, sequenceLength, budget);
            for (int k = 0; k < members.Count; k++) evicted[members[k]] = plan.Evicted[k].ToArray();
        }
        return new EvictionPlan(evicted);
    }
}

/// <summary>The same budget for every head: each keeps its best-scoring KVs (SnapKV, H2O, StreamingLLM, uniform ablation).</summary>
public abstract class UniformBudgetPolicy : EvictionPolicy
{
    /// <summary>How much a KV is worth keeping; the metric unless a policy says otherwise.</summary>
    protected virtual float Score(HeadSlots head, int slot) => head.Metric[slot];

    public override EvictionPlan Plan(IReadOnlyList<HeadSlots> heads, int blockSize, int sequenceLength, EvictionBudget budget, int layers)
    {
        var prot = Protection(sequenceLength, budget, Sinks);
        return KeepPerHead(heads, UniformKeep(heads, budget, prot), prot, Score);
    }
}

/// <summary>Ablation of KV-Compress: the same metric, but every head keeps the same number of KVs (SPEC 3 "uniform").</summary>
public sealed class KvCompressUniformPolicy : UniformBudgetPolicy
{
    public override string Name => "kvcompress-uniform";
    public override bool Squared => true;
    public override bool AccumulateDuringDecode => true;
}

/// <summary>StreamingLLM (Xiao et al. 2023, arXiv 2309.17453): 4 attention sinks plus the most recent tokens; the
/// metric is unused (recency decides).</summary>
public sealed class StreamingLlmPolicy : UniformBudgetPolicy
{
    public override string Name => "streamingllm";
    public override int Sinks => 4;
    protected override float Score(HeadSlots head, int slot) => head.Positions[slot];
}

/// <summary>H2O (Zhang et al. 2023, arXiv 2306.14048): accumulated attention (plain sum over every query, prompt and
/// decode), heavy hitters plus the recent window, the same budget per head.</summary>
public sealed class H2oPolicy : UniformBudgetPolicy
{
    public override string Name => "h2o";
    public override int DefaultObservationWindow => 0;
    public override int PoolKernel => 1;
    public override bool AccumulateDuringDecode => true;
}

/// <summary>SnapKV (Li et al. 2024, arXiv 2404.14469): attention of the observation window, max-pooled (kernel 7), the
/// same budget per head; the metric is not updated during decode.</summary>
public sealed class SnapKvPolicy : UniformBudgetPolicy
{
    public override string Name => "snapkv";
}

/// <summary>PyramidKV (Cai et al. 2024, arXiv 2406.02069): SnapKV's scores with budgets decreasing linearly over the
/// layers, from 1.5x the average at the first layer to 0.5x at the last (the average is kept).</summary>
public sealed class PyramidKvPolicy : EvictionPolicy
{
    public override string Name => "pyramidkv";
    public override EvictionPlan Plan(IReadOnlyList<HeadSlots> heads, int blockSize, int sequenceLength, EvictionBudget budget, int layers)
    {
        var prot = Protection(sequenceLength, budget, Sinks);
        var uniform = UniformKeep(heads, budget, prot);
        var keep = heads.Select((h, i) =>
        {
            double scale = layers == 1 ? 1.0 : 1.5 - (double)h.Layer / (layers - 1);
            return (int)Math.Round(uniform[i] * scale);
        }).ToArray();
        return KeepPerHead(heads, keep, prot, (h, t) => h.Metric[t]);
    }
}

/// <summary>Ada-KV (Feng et al. 2024, arXiv 2407.11550): each layer's budget (per-head budget times its heads) goes to
/// the layer's highest-scoring KVs across its heads, with every head guaranteed a floor of 20% of the per-head budget.</summary>
public sealed class AdaKvPolicy : EvictionPolicy
{
    public const double Floor = 0.2;
    public override string Name => "adakv";
    public override EvictionPlan Plan(IReadOnlyList<HeadSlots> heads, int blockSize, int sequenceLength, EvictionBudget budget, int layers)
    {
        var prot = Protection(sequenceLength, budget, Sinks);
        var uniform = UniformKeep(heads, budget, prot);
        var keep = new int[heads.Count];
        foreach (var layer in Enumerable.Range(0, heads.Count).GroupBy(i => heads[i].Layer))
        {
            var members = layer.ToList();
            int layerBudget = members.Sum(i => uniform[i]);
            // Floors first (the best KVs of each head), then the layer's remaining budget by score across its heads.
            var floor = members.ToDictionary(i => i, i => (int)Math.Floor(Floor * uniform[i]));
            var ranked = members.SelectMany(i => Enumerable.Range(0, heads[i].Length)
                    .Where(t => !prot(heads[i], t))
                    .OrderByDescending(t => heads[i].Metric[t]).ThenBy(t => t)
                    .Select((t, rank) => (Head: i, Score: heads[i].Metric[t], Rank: rank)))
                .ToList();
            foreach (var i in members) keep[i] = heads[i].Length - Enumerable.Range(0, heads[i].Length).Count(t => !prot(heads[i], t)); // protected
            int left = layerBudget - members.Sum(i => keep[i]);
            foreach (var r in ranked.Where(r => r.Rank < floor[r.Head])) { keep[r.Head]++; left--; }
            foreach (var r in ranked.Where(r => r.Rank >= floor[r.Head]).OrderByDescending(r => r.Score).ThenBy(r => r.Head).ThenBy(r => r.Rank))
            {
                if (left <= 0) break;
                keep[r.Head]++;
                left--;
            }
        }
        return KeepPerHead(heads, keep, prot, (h, t) => h.Metric[t]);
    }
}
