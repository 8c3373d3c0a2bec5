using System.Diagnostics;
using KvIlgpu.Cache;
using KvIlgpu.Compute;
using KvIlgpu.Models;
using KvIlgpu.Tokenization;

namespace KvIlgpu.Engine;

/// <summary>Continuous batching over the paged cache. Requests queue FIFO; one is admitted when blocks for its
/// prompt fit; every step decodes all running sequences together (whatever their lengths) and feeds prompt chunks
/// within the per-step token budget. A sequence that cannot get a block for its next token makes the newest running
/// sequence give up its blocks (preemption); the preempted one goes back to the front of the queue and is recomputed
/// from its prompt and the tokens it already produced. One engine thread runs the steps; Submit is thread-safe.
/// Each step has three parts: schedule (under the lock: which rows run), execute (the <see cref="ModelRunner"/>:
/// forward pass, metric work, compression) and update (under the lock: sample, stream, finish).</summary>
internal sealed class Scheduler : IDisposable
{
    private readonly LlamaModel _model;
    private readonly PagedKvCache _cache;
    private readonly ModelRunner _runner;
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
            throw new InvalidOptionException(nameof(options.MaxBatchSize),
                $"{nameof(options.MaxBatchSize)} must be 1..{cache.MaxSequences} (got {options.MaxBatchSize})");
        if (options.MaxTokensPerStep < options.MaxBatchSize || options.MaxTokensPerStep > model.MaxChunkRows)
            throw new InvalidOptionException(nameof(options.MaxTokensPerStep),
                $"{nameof(options.MaxTokensPerStep)} must be in {options.MaxBatchSize}..{model.MaxChunkRows} (got " +
                    $"{options.MaxTokensPerStep})");
        _model = model; _cache = cache; _options = options; _tokenizer = tokenizer;
        _runner = new ModelRunner(model, cache);
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
                    _preemptions, _generated, _steps, _generated / Math.Max(_uptime.Elapsed.TotalSeconds, 1e-9), _cache.TotalBytes,
                        _cache.PeakBytes, _evicted);
        }
    }

    /// <summary>Queues a request. Invalid requests (empty prompt, prompt longer than the context, bad sampling options)
    /// throw here and never enter the queue.</summary>
    public GenerationHandle Submit(IReadOnlyList<int> promptIds, GenerationOptions options, string? id = null,
        CancellationToken cancellationToken = default)
    {
        if (promptIds.Count == 0) throw new ArgumentException("the prompt is empty", nameof(promptIds));
        if (promptIds.Count > _model.Config.MaxSeqLen) throw new ContextOverflowException(promptIds.Count, _model.Config.MaxSeqLen);
        if (options.MaxTokens < 0) throw new InvalidOptionException(nameof(options.MaxTokens),
            $"{nameof(options.MaxTokens)} must be >= 0 (got {options.MaxTokens})");
        foreach (var t in promptIds)
            if ((uint)t >= (uint)_model.Config.VocabSize)
                throw new ArgumentOutOfRangeException(nameof(promptIds),
                    $"token id {t} is outside the vocabulary (0..{_model.Config.VocabSize - 1})");
        options.Compression?.Validate();
        options.ThinK?.Validate();
        var s = new Sequence
        {
            Id = id ?? $"req-{Interlocked.Increment(ref _nextId)}",
            Tokens = [.. promptIds], PromptLength = promptIds.Count, Options = options,
            Sampler = new Sampler(options.SamplingOrDefault), Cancellation = cancellationToken,
            Text = _tokenizer == null ? null : new TextStreamer(_tokenizer, promptIds),
            Usage = new KvUsageTracker(_model.Config.Layers),
            Layers = _model.Config.Layers,
        };
        if (_cache.BlocksFor(promptIds.Count) > _cache.Pool.Total)
            throw new InvalidOptionException("KvMemoryBytes",
                $"the prompt needs {_cache.BlocksFor(promptIds.Count)} KV blocks but the whole cache has {_cache.Pool.Total}: raise " +
                    $"KvMemoryBytes");
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_stopping, this);
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
        StepBatch? batch;
        lock (_lock) batch = Schedule();
        if (batch == null) return;
        var logits = _runner.Run(batch);
        lock (_lock) Update(batch, logits);
    }

    /// <summary>Schedule: drops cancelled requests, makes room for every running sequence (compressing, then
    /// preempting), admits newcomers, and lays out the step's rows: decode rows first (one each), then prompt chunks,
    /// oldest first, within the per-step token budget. Null when there is nothing to run.</summary>
    private StepBatch? Schedule()
    {
        DropCancelled();
        ReserveOrPreempt(); // running sequences first, then newcomers get what is left
        Admit();
        if (_running.Count == 0) return null;
        _maxBatch = Math.Max(_maxBatch, _running.Count);
        var batch = new StepBatch();
        int budget = _options.MaxTokensPerStep;
        foreach (var s in _running.OrderBy(s => s.Pending == 1 ? 0 : 1).ThenBy(s => s.AdmitOrder))
        {
            int n = Math.Min(s.Pending, budget - batch.Rows.Count);
            if (n <= 0) continue;
            bool prefill = s.Window != null;
            var c = s.Options.Compression;
            for (int i = 0; i < n; i++)
            {
                int position = s.Cached + i;
                // Decode queries accumulate into the metric on the device, each in its own request's mode; prefill
                // window queries are gathered per head.
                batch.Accumulate.Add(s.Compresses && !prefill && c!.AccumulatesDuringDecode
                    ? c.EffectiveSquared ? MetricAccumulation.Squared : MetricAccumulation.Plain
                    : MetricAccumulation.None);
                if (prefill && (c!.EffectiveWindow == 0 || position >= s.PrefillLength - c.EffectiveWindow))
                {
                    var window = s.Window!;
                    bool windowSquared = c.EffectiveSquared;
                    batch.WindowRows.Add((batch.Rows.Count, (layer, probs, stride) => window.Add(layer, probs, stride, position + 1,
                        windowSquared)));
                }
                if (s.ThinKQueries is { } queries && position >= s.PrefillLength - s.Options.ThinK!.ObservationWindow)
                    batch.QueryRows.Add((batch.Rows.Count, (layer, q) => queries[layer].Add(q)));
                batch.KeyMasks.Add(s.KeyMask);
                batch.Rows.Add(new BatchRow(s.Slot!.Value, s.Tokens[position], position, n, i));
            }
            _cache.Append(s.Slot!.Value, n);
            s.Cached += n;
            if (s.Pending == 0) { batch.LogitRows.Add(batch.Rows.Count - 1); batch.Sampled.Add(s); }
        }
        return batch.Rows.Count == 0 ? null : batch;
    }

    /// <summary>Update: for every sequence that got logits, compress as its policy says, then pick the next token
    /// (forced or sampled), stream it, and finish the request at EOS, its token limit or the end of the context.</summary>
    private void Update(StepBatch batch, float[] logits)
    {
        int vocab = _model.Config.VocabSize;
        _steps++;
        for (int i = 0; i < batch.Sampled.Count; i++)
        {
            var s = batch.Sampled[i];
            if (s.Slot is not int slot) continue; // cancelled meanwhile
            long evictedBefore = s.Usage.Evicted;
            _runner.AfterForward(s);
            _evicted += s.Usage.Evicted - evictedBefore;
            s.Usage.Step(_cache, slot);
            var row = logits.AsSpan(i * vocab, vocab);
            if (!AllFinite(row))
            {
                // This request alone fails; the rows of the others are computed independently and go on.
                Finish(s, null, new InvalidOperationException(
                    $"request {s.Id}: the model's logits became NaN or infinite at position {s.Tokens.Count}"));
                continue;
            }
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

    private void Compress(Sequence s) => _evicted += _runner.Compress(s);

    private static bool AllFinite(ReadOnlySpan<float> values)
    {
        foreach (float v in values)
            if (!float.IsFinite(v)) return false;
        return true;
    }

    private void DropCancelled()
    {
        foreach (var s in _running.Where(s => s.Cancellation.IsCancellationRequested).ToList()) Finish(s, null,
            new OperationCanceledException(s.Cancellation));
        for (var node = _waiting.First; node != null;)
        {
            var next = node.Next;
            if (node.Value.Cancellation.IsCancellationRequested)
            {
                _waiting.Remove(node);
                Complete(node.Value, null, new OperationCanceledException(node.Value.Cancellation));
            }
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
            s.Usage.Reserved(_cache, slot);
            s.Cached = 0;
            s.PrefillLength = s.Tokens.Count;
            s.Window = _runner.NewWindow(s);
            s.StartThinK();
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
                        $"request {s.Id}: {s.Tokens.Count} tokens need more KV blocks than the whole cache holds ({_cache.Pool.Total}); " +
                            $"raise KvMemoryBytes"));
                    break;
                }
                Preempt(victim);
            }
            if (s.Slot is int slot) s.Usage.Reserved(_cache, slot);
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
        int held = 0;
        if (s.Slot is int slot)
        {
            held = _cache.BlocksHeld(slot);
            _cache.RemoveSequence(slot);
        }
        s.Slot = null;
        _running.Remove(s);
        Complete(s, reason, error, held);
    }

    private void Complete(Sequence s, string? reason, Exception? error, int blocksHeld = 0)
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
            s.PromptLength, s.FirstToken ?? total, total, s.Usage.ToUsage(_cache, blocksHeld)));
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
