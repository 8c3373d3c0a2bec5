using KvIlgpu.Cache;

namespace KvIlgpu.Compression;

/// <summary>Carries out an eviction plan on the paged cache (SPEC 3 step 4): in each head, surviving KVs from the tail
/// move into the evicted holes (order is not kept; position and metric move with the KV), then the head's length
/// shrinks and its trailing blocks go back to the pool. Policies decide; only this class touches memory.</summary>
internal static class Compactor
{
    /// <summary>Logical moves for one head: (from, to) slot indices so that the survivors fill 0 .. newLength-1.</summary>
    public static List<(int From, int To)> Moves(int length, IReadOnlyCollection<int> evicted)
    {
        var gone = new HashSet<int>(evicted);
        int newLength = length - gone.Count;
        var holes = gone.Where(i => i < newLength).OrderBy(i => i).ToList();
        var tail = Enumerable.Range(newLength, length - newLength).Where(i => !gone.Contains(i)).ToList();
        if (holes.Count != tail.Count) throw new InvalidOperationException("evicted slots are not a set inside the head");
        return holes.Select((h, i) => (tail[i], h)).ToList();
    }

    /// <summary>Applies a plan whose heads are listed as (layer, kvHead) for one sequence slot.</summary>
    public static void Apply(PagedKvCache cache, int sequence, IReadOnlyList<HeadSlots> heads, EvictionPlan plan) =>
        Apply(cache, sequence, heads.Select(h => (h.Layer, h.KvHead, h.Length)).ToList(), plan);

    /// <summary>Applies a plan to heads given by (layer, KV head, length before eviction).</summary>
    public static void Apply(PagedKvCache cache, int sequence, IReadOnlyList<(int Layer, int KvHead, int Length)> heads, EvictionPlan plan)
    {
        var physical = new List<int>();
        for (int i = 0; i < heads.Count; i++)
        {
            var (layer, kvHead) = (heads[i].Layer, heads[i].KvHead);
            foreach (var (from, to) in Moves(heads[i].Length, plan.Evicted[i]))
            {
                physical.Add(cache.PhysicalSlot(sequence, layer, kvHead, from));
                physical.Add(cache.PhysicalSlot(sequence, layer, kvHead, to));
                physical.Add(cache.Head(sequence, layer, kvHead));
            }
        }
        cache.MoveSlots(physical);
        for (int i = 0; i < heads.Count; i++)
            if (plan.Evicted[i].Length > 0)
                cache.Truncate(sequence, heads[i].Layer, heads[i].KvHead, heads[i].Length - plan.Evicted[i].Length);
    }
}
