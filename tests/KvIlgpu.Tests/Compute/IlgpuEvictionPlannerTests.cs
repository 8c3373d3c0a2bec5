using KvIlgpu.Cache;
using KvIlgpu.Compression;
using KvIlgpu.Compute;
using KvIlgpu.Tests.Support;

namespace KvIlgpu.Tests.Compute;

/// <summary>The device planner (ILGPU.Algorithms radix sorts and scan) selects exactly what the host planner selects,
/// on random caches: the second of two sequences (so its heads are not the first in the tables), heads shortened to
/// random lengths, positions in any order as after earlier evictions, metrics with and without ties, both budget kinds,
/// and heads of different widths (each with its own tokens per block).</summary>
[Collection("backends")]
public class IlgpuEvictionPlannerTests
{
    [Theory]
    [InlineData("ilgpu-cpu-planning", false)]
    [InlineData("ilgpu-cpu-planning", true)]
    public void Device_plan_equals_the_host_plan(string backendName, bool ties)
    {
        var backend = Backends.Get(backendName);
        var planner = backend.EvictionPlanner ?? throw new InvalidOperationException($"{backendName} does not plan on the device");
        var rng = new Random(ties ? 3 : 4);
        lock (Backends.Lock)
            for (int trial = 0; trial < 3; trial++) // the CPU accelerator simulates the radix sorts slowly
            {
                int layers = rng.Next(1, 4), kvHeads = rng.Next(1, 3), blockSize = new[] { 1, 4, 8, 16 }[rng.Next(4)],
                    seqLen = rng.Next(1, 90);
                var config = TestModels.Config(dim: 4 * kvHeads * 4, heads: 4 * kvHeads, kvHeads: kvHeads, layers: layers, seq: 128);
                // Every other trial gives each (layer, KV head) its own widths of its 4 features.
                int[]? Widths() => trial % 2 == 0 ? null : [.. Enumerable.Range(0, layers * kvHeads).Select(_ => rng.Next(1, 5))];
                using var cache = new PagedKvCache(backend, config, new PagedCacheOptions(MemoryBytes: 4_000_000, BlockSize: blockSize,
                    MaxSequences: 2, KeyWidths: Widths(), ValueWidths: Widths()));
                int other = cache.TryAddSequence()!.Value, seq = cache.TryAddSequence()!.Value;
                Assert.True(cache.TryReserve(other, 5)); cache.Append(other, 5);
                Assert.True(cache.TryReserve(seq, seqLen)); cache.Append(seq, seqLen);
                int slots = cache.Pool.Total * cache.Layout.SlotsPerBlock;
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

                // Half the trials rank by SPEC 2's average variant, which the device applies where the metrics are.
                var average = rng.Next(2) == 0 ? default
                    : new KvIlgpu.Kernels.MetricAverage(true, rng.Next(0, seqLen + 1), rng.Next(0, 9), seqLen, rng.Next(2) == 0);
                var heads = cache.ReadHeads(seq);
                if (average.Enabled != 0)
                    heads = [.. heads.Select(hd =>
                        hd with { Metric = [.. hd.Metric.Select((m, t) => average.Score(m, hd.Positions[t]))] })];
                var host = CrossHeadChunkSelection.Plan(heads, seqLen, budget);
                var device = new CrossHeadChunkSelection().SelectOnDevice(planner, cache, seq, new SelectionContext(seqLen,
                    budget, layers, Average: average))!;
                for (int i = 0; i < host.Evicted.Count; i++)
                    Assert.True(host.Evicted[i].SequenceEqual(device.Evicted[i]),
                        $"trial {trial}, head {i}: host [{string.Join(",", host.Evicted[i])}] device " +
                            $"[{string.Join(",", device.Evicted[i])}]");
            }
    }

    /// <summary>Through <see cref="SequenceCompressor"/>, a backend that offers device planning (as CUDA does) leaves a
    /// sequence's heads exactly as host planning on the managed backend leaves them: the same survivors, positions and
    /// metrics in the same slots, and the same blocks back in the pool; also with heads of different widths.</summary>
    [Theory]
    [InlineData("kvcompress", false)] // the squared-average default
    [InlineData("kvcompress:squared", false)] // the SPEC's sum
    [InlineData("kvcompress", true)]
    public void Compression_through_a_device_planning_backend_matches_host_planning(string policy, bool mixedWidths)
    {
        var rng = new Random(5);
        var config = TestModels.Config(dim: 32, heads: 4, kvHeads: 2, layers: 2, seq: 96);
        var device = Backends.Get("ilgpu-cpu-planning");
        var host = Backends.Get("cpu");
        Assert.NotNull(device.EvictionPlanner);
        Assert.Null(host.EvictionPlanner);
        lock (Backends.Lock)
        {
            var options = new PagedCacheOptions(MemoryBytes: 400_000, BlockSize: 4, MaxSequences: 1,
                KeyWidths: mixedWidths ? [8, 3, 5, 8] : null, ValueWidths: mixedWidths ? [2, 8, 8, 4] : null);
            using var onDevice = new PagedKvCache(device, config, options);
            using var onHost = new PagedKvCache(host, config, options);
            int seqLen = 70, slots = onHost.Pool.Total * onHost.Layout.SlotsPerBlock;
            var metric = Enumerable.Range(0, slots).Select(_ => (float)rng.NextDouble()).ToArray();
            foreach (var cache in new[] { onDevice, onHost })
            {
                int seq = cache.TryAddSequence()!.Value;
                Assert.True(cache.TryReserve(seq, seqLen));
                cache.Append(seq, seqLen);
                var positions = new int[slots];
                for (int l = 0; l < 2; l++) for (int h = 0; h < 2; h++) for (int t = 0; t < seqLen; t++) positions[cache.PhysicalSlot(seq,
                    l, h, t)] = t;
                cache.Backend.WriteInts(cache.Buffers.Positions, positions);
                cache.Backend.Write(cache.Buffers.Metric, metric);
            }
            var compression = CompressionOptions.ForPolicy(policy, new EvictionBudget(MaxCacheTokens: 20, ProtectedWindow: 6, Sinks: 1));
            int evictedOnDevice = SequenceCompressor.Compress(onDevice, 0, seqLen, compression, promptLength: 40);
            int evictedOnHost = SequenceCompressor.Compress(onHost, 0, seqLen, compression, promptLength: 40);
            // Within a block per head of the budget.
            Assert.Equal(4 * seqLen - 4 * 20, evictedOnHost, tolerance: onHost.TokensPerBlock().Sum());
            Assert.Equal(evictedOnHost, evictedOnDevice);
            var a = onDevice.ReadHeads(0);
            var b = onHost.ReadHeads(0);
            for (int i = 0; i < a.Count; i++)
            {
                Assert.Equal(b[i].Positions, a[i].Positions);
                Assert.Equal(b[i].Metric, a[i].Metric);
            }
            Assert.Equal(onHost.Pool.Used, onDevice.Pool.Used);
            onDevice.CheckInvariants();
        }
    }

    /// <summary>The device planner on a CUDA GPU, where KV-Compress plans by default, against the host planner.</summary>
    [CudaTheory]
    [InlineData(false)]
    [InlineData(true)]
    public void Device_plan_equals_the_host_plan_on_cuda(bool ties) => Device_plan_equals_the_host_plan("cuda", ties);
}
