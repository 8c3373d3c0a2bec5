using System.Diagnostics;
using KvIlgpu.Cache;
using KvIlgpu.Compression;
using KvIlgpu.Compute;
using KvIlgpu.Models;
using KvIlgpu.Tokenization;

namespace KvIlgpu.Engine;

/// <summary>Limits of continuous batching.</summary>
/// <param name="MaxBatchSize">Most sequences running (holding cache) at once.</param>
/// <param name="MaxTokensPerStep">Most rows (decode tokens plus prompt-chunk tokens) in one forward step.</param>
public sealed record SchedulerOptions(int MaxBatchSize = 32, int MaxTokensPerStep = 256);

/// <summary>What happened to one request.</summary>
public sealed record GenerationResult(string Id, IReadOnlyList<int> TokenIds, string? Text, string StopReason, int Preemptions,
    int PromptTokens, TimeSpan TimeToFirstToken, TimeSpan Total, long EvictedKvs = 0)
{
    public double DecodeTokensPerSecond => TokenIds.Count <= 1 ? 0 : (TokenIds.Count - 1) / Math.Max((Total - TimeToFirstToken).TotalSeconds, 1e-9);
    public double PrefillTokensPerSecond => PromptTokens / Math.Max(TimeToFirstToken.TotalSeconds, 1e-9);
}

/// <summary>Counters of the scheduler since it started.</summary>
public sealed record SchedulerStats(int BlocksTotal, int BlocksUsed, int BlocksFree, int Running, int Waiting, int MaxBatchReached,
    long Preemptions, long GeneratedTokens, long Steps, double TokensPerSecond, long KvBytesTotal, long PeakKvBytes, long EvictedKvs = 0);

/// <summary>A submitted request: its token stream and its final result.</summary>
public sealed class GenerationHandle
{
    internal GenerationHandle(Sequence s) { Id = s.Id; Tokens = s.Output.Reader.ReadAllAsync(); Completion = s.Completion.Task; }
    public string Id { get; }
    /// <summary>Tokens as they are generated; ends when the request finishes, throws if it failed or was cancelled.</summary>
    public IAsyncEnumerable<GeneratedToken> Tokens { get; }
    public Task<GenerationResult> Completion { get; }
}

/// <summary>Continuous batching over the paged cache. Requests queue FIFO; one is admitted when blocks for its
/// prompt fit; every step decodes all running sequences together (whatever their lengths) and feeds prompt chunks
/// within the per-step token budget. A sequence that cannot get a block for its next token makes the newest running
/// sequence give up its blocks (preemption); the preempted one goes back to the front of the queue and is recomputed
/// from its prompt and the tokens it already produced. One engine thread runs the steps; Submit is thread-safe.</summary>
public sealed class Scheduler : IDisposable
{
    private readonly LlamaModel _model;
    private readonly PagedKvCache _cache;
    private readonly SchedulerOptions _options;
    private readonly ITextTokenizer? _tokenizer;
    private readonly object _lock = new();
    private readonly LinkedList<Sequence> _waiting = new();
    private readonly List<Sequence> _running = [];
    private readonly Thread _thread;
    private readonly SemaphoreSlim _wake = new(0);
    private readonly Stopwatch _uptime = new();
    private volatile bool _stopping;
    private long _admitCounter, _preemptions, _generated, _steps, _nextId, _evicted;
    private int _maxBatch;

    public Scheduler(LlamaModel model, PagedKvCache cache, SchedulerOptions options, ITextTokenizer? tokenizer = null)
    {
        if (options.MaxBatchSize <= 0 || options.MaxBatchSize > cache.MaxSequences)
            throw new ArgumentOutOfRangeException(nameof(options), $"max batch size must be 1..{cache.MaxSequences}");
        if (options.MaxTokensPerStep < options.MaxBatchSize || options.MaxTokensPerStep > model.MaxChunkRows)
            throw new ArgumentOutOfRangeException(nameof(options), $"max tokens per step must be in {options.MaxBatchSize}..{model.MaxChunkRows}");
        _model = model; _cache = cache; _options = options; _tokenizer = tokenizer;
        _thread = new Thread(Loop) { IsBackground = true, Name = "kvilgpu-scheduler" };
        _thread.Start();
    }

    public PagedKvCache Cache => _cache;

    public SchedulerStats Stats
    {
        get
        {
            lock (_lock)
                return new SchedulerStats(_cache.Pool.Total, _cache.Pool.Used, _cache.Pool.Free, _running.Count, _waiting.Count, _maxBatch,
                    _preemptions, _generated, _steps, _generated / Math.Max(_uptime.Elapsed.TotalSeconds, 1e-9), _cache.TotalBytes, _cache.PeakBytes, _evicted);
        }
    }

    /// <summary>Queues a request. Invalid requests (empty prompt, prompt longer than the context, bad sampling options)
    /// throw here and never enter the queue.</summary>
    public GenerationHandle Submit(IReadOnlyList<int> promptIds, GenerationOptions options, string? id = null, CancellationToken cancellationToken = default)
    {
        if (promptIds.Count == 0) throw new ArgumentException("the prompt is empty", nameof(promptIds));
        if (promptIds.Count > _model.Config.MaxSeqLen) throw new ContextOverflowException(promptIds.Count, _model.Config.MaxSeqLen);
        if (options.MaxTokens < 0) throw new ArgumentOutOfRangeException(nameof(options), "max_tokens must be >= 0");
        foreach (var t in promptIds)
            if ((uint)t >= (uint)_model.Config.VocabSize)
                throw new ArgumentOutOfRangeException(nameof(promptIds), $"token id {t} is outside the vocabulary (0..{_model.Config.VocabSize - 1})");
        options.Compression?.Validate();
        var s = new Sequence
        {
            Id = id ?? $"req-{Interlocked.Increment(ref _nextId)}",
            Tokens = [.. promptIds], PromptLength = promptIds.Count, Options = options,
            Sampler = new Sampler(options.SamplingOrDefault), Cancellation = cancellationToken,
            Text = _tokenizer == null ? null : new TextStreamer(_tokenizer, promptIds),
        };
        if (_cache.BlocksFor(promptIds.Count) > _cache.Pool.Total)
            throw new ArgumentOutOfRangeException(nameof(promptIds),
                $"the prompt needs {_cache.BlocksFor(promptIds.Count)} KV blocks but the whole cache has {_cache.Pool.Total}: raise --kv-memory");
        lock (_lock)
        {
            if (_stopping) throw new ObjectDisposedException(nameof(Scheduler));
            _waiting.AddLast(s);
            if (!_uptime.IsRunning) _uptime.Start();
        }
        _wake.Release();
        return new GenerationHandle(s);
    }

    private void Loop()
    {
        while (!_stopping)
        {
            bool work;
            lock (_lock) work = _waiting.Count > 0 || _running.Count > 0;
            if (!work) { _wake.Wait(100); continue; }
            try { Step(); }
            catch (Exception e)
            {
                // A failed step fails the sequences that were running; queued ones and later requests go on.
                lock (_lock) foreach (var s in _running.ToList()) Finish(s, null, e);
            }
        }
    }

    private void Step()
    {
        var rows = new List<BatchRow>();
        var logitRows = new List<int>();
        var sampled = new List<Sequence>();
        var accumulate = new List<MetricAccumulation>();
        var windowRows = new List<(int, Action<int, float[], int>)>();
        lock (_lock)
        {
            DropCancelled();
            ReserveOrPreempt(); // running sequences first, then newcomers get what is left
            Admit();
            if (_running.Count == 0) return;
            _maxBatch = Math.Max(_maxBatch, _running.Count);
            int budget = _options.MaxTokensPerStep;
            // Decode rows first (one each), then prompt chunks, oldest first.
            foreach (var s in _running.OrderBy(s => s.Pending == 1 ? 0 : 1).ThenBy(s => s.AdmitOrder))
            {
                int n = Math.Min(s.Pending, budget - rows.Count);
                if (n <= 0) continue;
                bool prefill = s.Window != null;
                for (int i = 0; i < n; i++)
                {
                    int position = s.Cached + i;
                    var c = s.Options.Compression;
                    // Decode queries accumulate into the metric on the device; prefill window queries are gathered per head.
                    accumulate.Add(s.Compresses && !prefill && c!.AccumulatesDuringDecode
                        ? c.EffectiveSquared ? MetricAccumulation.Squared : MetricAccumulation.Plain
                        : MetricAccumulation.None);
                    if (prefill && (c!.EffectiveWindow == 0 || position >= s.PrefillLength - c.EffectiveWindow))
                    {
                        var window = s.Window!;
                        bool windowSquared = c.EffectiveSquared;
                        windowRows.Add((rows.Count, (layer, probs, stride) => window.Add(layer, probs, stride, position + 1, windowSquared)));
                    }
                    rows.Add(new BatchRow(s.Slot!.Value, s.Tokens[position], position, n, i));
                }
                _cache.Append(s.Slot!.Value, n);
                s.Cached += n;
                if (s.Pending == 0) { logitRows.Add(rows.Count - 1); sampled.Add(s); }
            }
        }
        if (rows.Count == 0) return;
        var metric = accumulate.Any(a => a != MetricAccumulation.None) || windowRows.Count > 0
            ? new MetricRequest(accumulate.ToArray(), windowRows)
            : null;
        var logits = _model.ForwardBatch(_cache, rows.ToArray(), logitRows.ToArray(), metric);
        int vocab = _model.Config.VocabSize;
        lock (_lock)
        {
            _steps++;
            for (int i = 0; i < sampled.Count; i++)
            {
                var s = sampled[i];
                if (s.Slot == null) continue; // cancelled meanwhile
                AfterForward(s);
                var row = logits.AsSpan(i * vocab, vocab);
                s.Options.OnLogits?.Invoke(s.Tokens.Count, row.ToArray());
                int next = s.Options.ForcedTokens is { } forced && s.Generated < forced.Count ? forced[s.Generated] : s.Sampler.Next(row);
                if (s.Options.StopAtEos && _model.Config.EosTokenIds.Contains(next)) { Finish(s, "eos"); continue; }
                s.Tokens.Add(next);
                _generated++;
                s.FirstToken ??= s.Clock.Elapsed;
                s.Output.Writer.TryWrite(new GeneratedToken(next, s.Text?.Add(next) ?? "", s.Tokens.Count - 1));
                if (s.Generated >= s.Options.MaxTokens) Finish(s, "max_tokens");
                else if (s.Tokens.Count >= _model.Config.MaxSeqLen) Finish(s, "context_full");
            }
        }
    }

    /// <summary>Compression after a sequence's step: seed the metric and compress when its prefill has just finished,
    /// else compress every Interval decode steps.</summary>
    private void AfterForward(Sequence s)
    {
        if (!s.Compresses) return;
        var c = s.Options.Compression!;
        if (s.Window != null)
        {
            SequenceCompressor.SeedMetric(_cache, s.Slot!.Value, s.Window, c, _model.Config.GroupSize);
            s.Window = null;
            Compress(s);
        }
        else if (++s.DecodeStepsSinceCompression >= c.Interval) Compress(s);
    }

    private void Compress(Sequence s)
    {
        int evicted = SequenceCompressor.Compress(_cache, s.Slot!.Value, s.Cached, s.Options.Compression!, s.PromptLength);
        s.Evicted += evicted;
        _evicted += evicted;
        s.DecodeStepsSinceCompression = 0;
    }

    private void DropCancelled()
    {
        foreach (var s in _running.Where(s => s.Cancellation.IsCancellationRequested).ToList()) Finish(s, null, new OperationCanceledException(s.Cancellation));
        for (var node = _waiting.First; node != null;)
        {
            var next = node.Next;
            if (node.Value.Cancellation.IsCancellationRequested) { _waiting.Remove(node); Complete(node.Value, null, new OperationCanceledException(node.Value.Cancellation)); }
            node = next;
        }
    }

    /// <summary>FIFO admission: the head of the queue enters when a cache slot and blocks for all its tokens are free.</summary>
    private void Admit()
    {
        while (_waiting.First is { } node && _running.Count < _options.MaxBatchSize)
        {
            var s = node.Value;
            if (s.Options.MaxTokens == 0 || s.Tokens.Count >= _model.Config.MaxSeqLen)
            {
                _waiting.RemoveFirst();
                Complete(s, s.Options.MaxTokens == 0 ? "max_tokens" : "context_full", null);
                continue;
            }
            if (_cache.BlocksFor(s.Tokens.Count) > _cache.Pool.Free) break;
            if (_cache.TryAddSequence() is not int slot) break;
            if (!_cache.TryReserve(slot, s.Tokens.Count)) { _cache.RemoveSequence(slot); break; }
            _waiting.RemoveFirst();
            s.Slot = slot;
            s.Cached = 0;
            s.PrefillLength = s.Tokens.Count;
            s.Window = s.Compresses ? new ObservationWindowMetric(_model.Config.Layers, _model.Config.Heads, s.Tokens.Count) : null;
            s.AdmitOrder = ++_admitCounter;
            _running.Add(s);
        }
    }

    /// <summary>Every running sequence gets room for its pending tokens; when the pool is short, the newest running
    /// sequence is preempted (possibly the one asking), until the rest fit.</summary>
    private void ReserveOrPreempt()
    {
        foreach (var s in _running.OrderBy(s => s.AdmitOrder).ToList())
        {
            bool compressed = false;
            while (s.Slot != null && !_cache.TryReserve(s.Slot.Value, s.Pending))
            {
                // Compress instead of preempting: every running sequence with a budget sheds what it is over by.
                if (!compressed)
                {
                    compressed = true;
                    int before = _cache.Pool.Free;
                    foreach (var other in _running.Where(r => r.Compresses && r.Window == null && r.Slot != null).ToList()) Compress(other);
                    if (_cache.Pool.Free > before) continue;
                }
                var victim = _running.MaxBy(r => r.AdmitOrder)!;
                if (victim == s && _running.Count == 1)
                {
                    Finish(s, null, new InvalidOperationException(
                        $"request {s.Id}: {s.Tokens.Count} tokens need more KV blocks than the whole cache holds ({_cache.Pool.Total}); raise --kv-memory"));
                    break;
                }
                Preempt(victim);
            }
        }
    }

    private void Preempt(Sequence s)
    {
        _cache.RemoveSequence(s.Slot!.Value);
        s.Slot = null;
        s.Cached = 0;
        s.Window = null;
        s.Preemptions++;
        _preemptions++;
        _running.Remove(s);
        _waiting.AddFirst(s); // recomputed first when blocks free up: FIFO order is kept
    }

    private void Finish(Sequence s, string? reason, Exception? error = null)
    {
        if (s.Slot is int slot) _cache.RemoveSequence(slot);
        s.Slot = null;
        _running.Remove(s);
        Complete(s, reason, error);
    }

    private static void Complete(Sequence s, string? reason, Exception? error)
    {
        if (error != null)
        {
            s.Output.Writer.TryComplete(error);
            if (error is OperationCanceledException oce) s.Completion.TrySetCanceled(oce.CancellationToken);
            else s.Completion.TrySetException(error);
            return;
        }
        s.Output.Writer.TryComplete();
        var total = s.Clock.Elapsed;
        s.Completion.TrySetResult(new GenerationResult(s.Id, s.Tokens.Skip(s.PromptLength).ToList(), s.Text?.Text, reason!, s.Preemptions,
            s.PromptLength, s.FirstToken ?? total, total, s.Evicted));
    }

    public void Dispose()
    {
        _stopping = true;
        _wake.Release();
        _thread.Join();
        lock (_lock)
        {
            foreach (var s in _running.ToList()) Finish(s, null, new ObjectDisposedException("the engine was disposed"));
            foreach (var s in _waiting) Complete(s, null, new ObjectDisposedException("the engine was disposed"));
            _waiting.Clear();
        }
        _wake.Dispose();
    }
}
