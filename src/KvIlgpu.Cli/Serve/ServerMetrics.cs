using KvIlgpu.Engine;
using Prometheus;

namespace KvIlgpu.Cli.Serve;

/// <summary>The server's Prometheus metrics (prometheus-net), in a registry of their own: request and token counters,
/// time-to-first-token and inter-token latency histograms, and at each scrape the engine's running and waiting
/// sequences, KV blocks used and free, preemptions and evicted KVs.</summary>
internal sealed class ServerMetrics
{
    public CollectorRegistry Registry { get; } = Metrics.NewCustomRegistry();
    public Counter Requests { get; }
    public Counter PromptTokens { get; }
    public Counter GeneratedTokens { get; }
    public Histogram TimeToFirstToken { get; }
    public Histogram InterTokenLatency { get; }

    public ServerMetrics(InferenceEngine engine)
    {
        var f = Metrics.WithCustomRegistry(Registry);
        Requests = f.CreateCounter("kvilgpu_requests_total", "HTTP requests answered, by endpoint and status",
            new CounterConfiguration { LabelNames = ["endpoint", "status"] });
        PromptTokens = f.CreateCounter("kvilgpu_prompt_tokens_total", "Prompt tokens of finished requests");
        GeneratedTokens = f.CreateCounter("kvilgpu_generated_tokens_total", "Tokens generated");
        TimeToFirstToken = f.CreateHistogram("kvilgpu_time_to_first_token_seconds", "From a request's arrival to its first token",
            new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.005, 2, 14) });
        InterTokenLatency = f.CreateHistogram("kvilgpu_inter_token_latency_seconds", "Between a request's consecutive tokens",
            new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.001, 2, 14) });
        var running = f.CreateGauge("kvilgpu_running_sequences", "Sequences being decoded");
        var waiting = f.CreateGauge("kvilgpu_waiting_sequences", "Requests waiting for a batch slot");
        var used = f.CreateGauge("kvilgpu_kv_blocks_used", "KV cache blocks in use");
        var free = f.CreateGauge("kvilgpu_kv_blocks_free", "KV cache blocks free");
        var preemptions = f.CreateGauge("kvilgpu_preemptions", "Sequences preempted since start (a counter read from the engine)");
        var evicted = f.CreateGauge("kvilgpu_evicted_kvs", "KVs evicted by compression since start (a counter read from the engine)");
        Registry.AddBeforeCollectCallback(() =>
        {
            var s = engine.Stats;
            running.Set(s.Running); waiting.Set(s.Waiting); used.Set(s.BlocksUsed); free.Set(s.BlocksFree);
            preemptions.Set(s.Preemptions); evicted.Set(s.EvictedKvs);
        });
    }
}
