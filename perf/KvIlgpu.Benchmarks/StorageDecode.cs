using KvIlgpu.Cache;
using KvIlgpu.Compute;
using KvIlgpu.Engine;
using KvIlgpu.Models.Loading;

namespace KvIlgpu.Benchmarks;

/// <summary>Decode speed of one sequence over a long cache in each KV storage type: a prompt that fills the cache to
/// cached tokens less the decoded ones, then greedy decode steps, through the engine's paged path (managed SIMD CPU
/// backend); rounds alternate the storage types and each reports its median. A warm-up run per type comes first.
/// Usage: kv-decode MODEL [cached-tokens] [decode-tokens] [rounds] [PROJECTION.safetensors]; decode-tokens 0 times the
/// attention step alone. With a projection file it compares, instead of storage types, the full cache (the model's own
/// storage type) with the file's own ranks (each head as wide as its ranks) and uniform ranks at the file's kept share.
/// </summary>
internal static class StorageDecode
{
    public static void Run(string path, int cached, int decode, int rounds, string? projectionPath = null)
    {
        var w = ModelLoader.Load(path);
        var c = w.Config;
        cached = Math.Min(cached, c.MaxSeqLen);
        int prompt = cached - decode;
        var rng = new Random(3);
        var ids = Enumerable.Range(0, prompt).Select(_ => rng.Next(3, c.VocabSize)).ToArray();
        var types = new[] { KvStorageType.F32, KvStorageType.F16, KvStorageType.BF16, KvStorageType.Q8 };
        Console.WriteLine($"model: {path}; {Environment.ProcessorCount} cores");
        if (projectionPath != null)
        {
            var file = Projection.KvProjectionFile.Load(projectionPath, c);
            var share = Projection.KvProjection.UniformRank(file.KeptFraction, c.HeadDim) / (double)c.HeadDim;
            DecodeRounds(w, ids, decode, rounds, "cache", [("full", new EngineOptions(DeviceKind.Cpu, MaxBatchSize: 1)),
                ("the file's ranks", new EngineOptions(DeviceKind.Cpu, MaxBatchSize: 1, KvProjection: file)),
                ($"uniform ranks, {share:0.###} of the dims", new EngineOptions(DeviceKind.Cpu, MaxBatchSize: 1,
                    KvProjection: file.WithUniformRanks(share)))]);
            return;
        }
        if (decode > 0)
            DecodeRounds(w, ids, decode, rounds, "KV storage", [.. types.Select(t => (t.ToString().ToLowerInvariant(),
                new EngineOptions(DeviceKind.Cpu, MaxBatchSize: 1, KvStorage: t)))]);

        // The attention step alone (what the storage type changes): one decode row over every layer's cached tokens.
        var attention = types.ToDictionary(t => t, _ => new List<double>());
        var caches = types.ToDictionary(t => t, t => FilledCache(c, t, cached));
        for (int round = 0; round <= rounds; round++)
            foreach (var t in types)
            {
                double seconds = TimeAttention(caches[t].Backend, caches[t].Cache, c, cached, iterations: 50);
                if (round > 0) attention[t].Add(seconds); // round 0 warms up
            }
        double f32Time = Median(attention[KvStorageType.F32]);
        Console.WriteLine();
        Console.WriteLine($"Paged attention alone: one decode row over {cached} cached tokens in each of {c.Layers} layers " +
            $"({c.Heads} query heads, {c.KvHeads} KV heads of {c.HeadDim}), median of {rounds} rounds of 50 steps:");
        Console.WriteLine();
        // The fastest round too: on a shared machine it is the one least disturbed by other work.
        double f32Best = attention[KvStorageType.F32].Min();
        Console.WriteLine("| KV storage | KV MB read per step | attention ms per step | speed vs f32 | fastest round, ms | vs f32 |");
        Console.WriteLine("|---|---|---|---|---|---|");
        foreach (var t in types)
            Console.WriteLine($"| {t.ToString().ToLowerInvariant()} | " +
                $"{(double)caches[t].Cache.Layout.BytesPerSlot * cached * c.Layers * c.KvHeads / 1e6:F1} | " +
                $"{Median(attention[t]) * 1e3:F3} | {f32Time / Median(attention[t]):F2}x | {attention[t].Min() * 1e3:F3} | " +
                $"{f32Best / attention[t].Min():F2}x |");
        foreach (var (_, cache) in caches.Values) cache.Dispose();
    }

    /// <summary>Greedy decode through one engine per setting, the settings alternated over rounds, medians against the
    /// first setting's: the first table.</summary>
    private static void DecodeRounds(Models.LlamaWeights w, int[] ids, int decode, int rounds, string what,
        IReadOnlyList<(string Name, EngineOptions Options)> settings)
    {
        var engines = settings.Select(s => InferenceEngine.FromWeights(w, s.Options)).ToList();
        Console.WriteLine($"one sequence, {ids.Length}-token prompt then {decode} decode steps (the cache ends at " +
            $"{ids.Length + decode} tokens); {rounds} alternating rounds, medians; {Environment.ProcessorCount} cores");
        var results = engines.Select(_ => new List<double>()).ToList();
        double Decode(InferenceEngine e) => e.Submit(ids, new GenerationOptions(decode, SamplingOptions.Greedy, StopAtEos: false))
            .Completion.GetAwaiter().GetResult().DecodeTokensPerSecond;
        foreach (var e in engines) Decode(e);
        for (int round = 0; round < rounds; round++)
            for (int i = 0; i < engines.Count; i++) results[i].Add(Decode(engines[i]));
        double baseline = Median(results[0]);
        Console.WriteLine();
        Console.WriteLine($"| {what} | bytes per token per head | decode tok/s | vs {settings[0].Name} |");
        Console.WriteLine("|---|---|---|---|");
        for (int i = 0; i < engines.Count; i++)
            Console.WriteLine($"| {settings[i].Name} | {engines[i].KvBytesPerToken} | {Median(results[i]):F1} | " +
                $"{Median(results[i]) / baseline:F2}x |");
        foreach (var e in engines) e.Dispose();
    }

    /// <summary>A one-sequence cache of the model's shape holding tokens random keys and values in every layer, written
    /// through the cache-write kernel.</summary>
    private static (IComputeBackend Backend, PagedKvCache Cache) FilledCache(Models.ModelConfig c, KvStorageType type, int tokens)
    {
        var backend = new ManagedSimdBackend();
        var cache = new PagedKvCache(backend, c, new PagedCacheOptions(MemoryBytes: 256L << 20, MaxSequences: 1, Storage: type));
        int s = cache.TryAddSequence()!.Value;
        if (!cache.TryReserve(s, tokens)) throw new InvalidOperationException("the cache is too small");
        cache.Append(s, tokens);
        var rng = new Random(5);
        int chunk = 64;
        var k = Enumerable.Range(0, chunk * c.KvDim).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        using var dk = backend.Upload(k);
        using var info = backend.AllocateInts(4 * chunk);
        for (int start = 0; start < tokens; start += chunk)
        {
            int rows = Math.Min(chunk, tokens - start);
            backend.WriteInts(info, Enumerable.Range(0, rows).SelectMany(r => new[] { s, tokens, start + r, start + r }).ToArray());
            for (int layer = 0; layer < c.Layers; layer++) backend.PagedWrite(dk, dk, cache.Buffers, info, rows, layer);
        }
        return (backend, cache);
    }

    private static double TimeAttention(IComputeBackend backend, PagedKvCache cache, Models.ModelConfig c, int tokens, int iterations)
    {
        using var q = backend.Upload(Enumerable.Range(0, c.QDim).Select(i => MathF.Sin(i)).ToArray());
        using var output = backend.Allocate(c.QDim);
        using var probs = backend.Allocate(c.Heads * tokens);
        using var info = backend.AllocateInts(4);
        backend.WriteInts(info, [0, 1, 0, tokens - 1]);
        var sw = System.Diagnostics.Stopwatch.StartNew();
        for (int i = 0; i < iterations; i++)
            for (int layer = 0; layer < c.Layers; layer++)
                backend.PagedAttention(q, cache.Buffers, info, 1, layer, output, probs, tokens, emitProbabilities: false);
        return sw.Elapsed.TotalSeconds / iterations;
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[sorted.Count / 2 - 1] + sorted[sorted.Count / 2]) / 2;
    }
}
