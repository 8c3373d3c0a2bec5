using KvIlgpu.Cache;
using KvIlgpu.Compression;
using KvIlgpu.Compute;
using KvIlgpu.Tests.Support;

namespace KvIlgpu.Tests.Compression;

/// <summary>The device planner (ILGPU.Algorithms radix sorts and scan) selects exactly what the host planner selects,
/// on random caches: the second of two sequences (so its heads are not the first in the tables), heads shortened to
/// random lengths, positions in any order as after earlier evictions, metrics with and without ties, both budget kinds.</summary>
[Collection("backends")]
public class DeviceEvictionPlannerTests
{
    [Theory]
    [InlineData("ilgpu-cpu-wide", false)]
    [InlineData("ilgpu-cpu-wide", true)]
    public void Device_plan_equals_the_host_plan(string backendName, bool ties)
    {
        var backend = (IlgpuBackend)Backends.Get(backendName);
        var rng = new Random(ties ? 3 : 4);
        lock (Backends.Lock)
            for (int trial = 0; trial < 3; trial++) // the CPU accelerator simulates the radix sorts slowly
            {
                int layers = rng.Next(1, 4), kvHeads = rng.Next(1, 3), blockSize = new[] { 1, 4, 8, 16 }[rng.Next(4)], seqLen = rng.Next(1, 90);
                var config = TestModels.Config(dim: 4 * kvHeads * 4, heads: 4 * kvHeads, kvHeads: kvHeads, layers: layers, seq: 128);
                using var cache = new PagedKvCache(backend, config, new PagedCacheOptions(MemoryBytes: 4_000_000, BlockSize: blockSize, MaxSequences: 2));
                int other = cache.TryAddSequence()!.Value, seq = cache.TryAddSequence()!.Value;
                Assert.True(cache.TryReserve(other, 5)); cache.Append(other, 5);
                Assert.True(cache.TryReserve(seq, seqLen)); cache.Append(seq, seqLen);
                int slots = cache.Pool.Total * blockSize;
                var positions = new int[slots];
                var metric = new float[slots];
                for (int l = 0; l < layers; l++)
                    for (int h = 0; h < kvHeads; h++)
                    {
                        var order = Enumerable.Range(0, seqLen).OrderBy(_ => rng.Next()).ToArray();
                        for (int t = 0; t < seqLen; t++)
                        {
                            int s = cache.PhysicalSlot(seq, l, h, t);
                            positions[s] = order[t];
                            metric[s] = ties ? rng.Next(0, 4) * 0.25f : (float)rng.NextDouble();
                        }
                    }
                backend.WriteInts(cache.Buffers.Positions, positions);
                backend.Write(cache.Buffers.Metric, metric);
                for (int l = 0; l < layers; l++)
                    for (int h = 0; h < kvHeads; h++) cache.Truncate(seq, l, h, rng.Next(0, seqLen + 1));
                var budget = rng.Next(2) == 0
                    ? new EvictionBudget(MaxCacheTokens: rng.Next(1, seqLen + 2), ProtectedWindow: rng.Next(0, 10), Sinks: rng.Next(0, 3))
                    : new EvictionBudget(KeepRate: rng.NextDouble(), ProtectedWindow: rng.Next(0, 10), Sinks: rng.Next(0, 3));

                var host = EvictionPlanner.Plan(cache.ReadHeads(seq), blockSize, seqLen, budget);
                var device = DeviceEvictionPlanner.For(backend).Plan(cache, seq, seqLen, budget);
                for (int i = 0; i < host.Evicted.Count; i++)
                    Assert.True(host.Evicted[i].SequenceEqual(device.Evicted[i]),
                        $"trial {trial}, head {i}: host [{string.Join(",", host.Evicted[i])}] device [{string.Join(",", device.Evicted[i])}]");
            }
    }
}

