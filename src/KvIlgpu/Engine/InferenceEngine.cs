using System.Runtime.CompilerServices;
using KvIlgpu.Cache;
using KvIlgpu.Compute;
using KvIlgpu.Models;
using KvIlgpu.Models.Loading;
using KvIlgpu.Tokenization;

namespace KvIlgpu.Engine;

/// <summary>The library's entry point: a loaded model on a device with its paged KV cache, tokenizer and
/// continuous-batching scheduler. Submit requests from any thread; each streams its own tokens.
/// <code>
/// using var engine = InferenceEngine.Load("model-dir");
/// await foreach (var t in engine.GenerateAsync("Once upon a time", new GenerationOptions(MaxTokens: 64)))
///     Console.Write(t.Text);
/// </code>
/// Dispose it to free device memory.</summary>
public sealed class InferenceEngine : IDisposable
{
    private readonly LlamaModel _model;
    private readonly IComputeBackend _backend;
    private readonly PagedKvCache _cache;
    private readonly Scheduler _scheduler;

    /// <summary>The loaded model's shape.</summary>
    public ModelConfig Config => _model.Config;
    /// <summary>The model's tokenizer, when one was found.</summary>
    public ITextTokenizer? Tokenizer { get; }
    /// <summary>Where the model runs, in words.</summary>
    public string DeviceName => _backend.Name;
    /// <summary>Engine-wide counters: blocks, batches, preemptions, throughput.</summary>
    public SchedulerStats Stats => _scheduler.Stats;
    internal PagedKvCache Cache => _cache;
    internal LlamaModel Model => _model;
    /// <summary>How the KV cache stores keys and values (Auto resolved).</summary>
    public KvStorageType KvStorage => (KvStorageType)_cache.Layout.Storage;
    /// <summary>Bytes one cached token of one (layer, KV head) holds: packed K and V at that head's widths, its position
    /// and metric, and with q8 its scales; the mean over the (layer, KV head)s where a projection's ranks differ between
    /// them.</summary>
    public int KvBytesPerToken => _cache.Layout.BytesPerSlot;
    /// <summary>The KV projection every request's keys and values go through (null: none).</summary>
    public Projection.KvProjection? KvProjection => _model.Projection;

    private InferenceEngine(LlamaModel model, IComputeBackend backend, ITextTokenizer? tokenizer, EngineOptions options,
        KvStorageType storage)
    {
        _model = model; _backend = backend; Tokenizer = tokenizer;
        var c = model.Config;
        // A projection's cache holds each head's coordinates only: as wide as that head's ranks.
        var cacheOptions = new PagedCacheOptions(options.KvMemoryBytes, options.KvMemoryFraction, options.BlockSize, options.MaxBatchSize,
            storage, KeyWidths: options.KvProjection?.AllRanks(Projection.KvPart.Key),
            ValueWidths: options.KvProjection?.AllRanks(Projection.KvPart.Value));
        long perSequence = cacheOptions.LayoutFor(c).FullSequenceBytes;
        long memory = options.KvMemoryBytes ?? Math.Min(8 * perSequence + (1 << 20),
            (long)(backend.MemoryBytes * options.KvMemoryFraction));
        _cache = new PagedKvCache(backend, c, cacheOptions with { MemoryBytes = memory });
        try { _scheduler = new Scheduler(model, _cache, new SchedulerOptions(options.MaxBatchSize, options.MaxTokensPerStep), tokenizer); }
        catch { _cache.Dispose(); throw; }
    }

    /// <summary>Loads a model (HF folder, .gguf or llama2.c .bin) onto the chosen device.</summary>
    public static InferenceEngine Load(string modelPath, EngineOptions? options = null, IProgress<LoadProgress>? progress = null,
        string? tokenizerPath = null)
    {
        options ??= new EngineOptions();
        var warmUp = StartupWarmup.Start(modelPath, options);
        var weights = ModelLoader.Load(modelPath, progress);
        var c = weights.Config;
        int? eos = c.EosTokenIds.Count > 0 ? c.EosTokenIds[0] : null;
        var tokenizer = tokenizerPath != null
            ? TokenizerLoader.Open(tokenizerPath, c.VocabSize, c.BosTokenId, eos)
            : TokenizerLoader.ForModel(modelPath, c.VocabSize, c.BosTokenId, eos);
        var engine = FromWeights(weights, options, tokenizer, progress);
        // The warm-up had the second core while the file was read and the engine built; waiting for it keeps it off the
        // cores the first request runs on.
        warmUp?.Wait();
        return engine;
    }

    /// <summary>Puts loaded weights onto the chosen device, with an optional tokenizer.</summary>
    public static InferenceEngine FromWeights(LlamaWeights weights, EngineOptions? options = null, ITextTokenizer? tokenizer = null,
        IProgress<LoadProgress>? progress = null)
    {
        options ??= new EngineOptions();
        var storage = EngineOptions.ResolveStorage(options.KvStorage, weights);
        var backend = BackendFactory.Create(options.Device, options.CpuThreads);
        LlamaModel? model = null;
        try
        {
            var upload = progress == null ? null : new Progress<(int Done, int Total)>(p =>
                progress.Report(new LoadProgress("uploading to " + backend.Kind, p.Done, p.Total)));
            model = new LlamaModel(weights, backend, options.MaxTokensPerStep, upload);
            if (options.KvProjection != null) model.Projection = options.KvProjection;
            return new InferenceEngine(model, backend, tokenizer, options, storage);
        }
        catch
        {
            model?.Dispose();
            backend.Dispose();
            throw;
        }
    }

    /// <summary>Encodes a prompt with the model's tokenizer (BOS first when the model has one).</summary>
    public IReadOnlyList<int> Encode(string prompt) =>
        (Tokenizer ?? throw new InvalidOperationException("this model has no tokenizer: pass token ids instead")).Encode(prompt,
            addBos: Tokenizer.BosId != null);

    /// <summary>Queues a request and returns at once; thread-safe. Its tokens stream through the handle.</summary>
    public GenerationHandle Submit(IReadOnlyList<int> promptIds, GenerationOptions? options = null, string? id = null,
        CancellationToken cancellationToken = default) =>
        _scheduler.Submit(promptIds, options ?? new GenerationOptions(), id, cancellationToken);

    /// <summary>Queues a text prompt (encoded with the model's tokenizer, BOS first when it has one); see
    /// <see cref="Submit(IReadOnlyList{int}, GenerationOptions?, string?, CancellationToken)"/>.</summary>
    public GenerationHandle Submit(string prompt, GenerationOptions? options = null, string? id = null,
        CancellationToken cancellationToken = default) =>
        Submit(Encode(prompt), options, id, cancellationToken);

    /// <summary>Streams generated tokens for a text prompt (encoded with the model's tokenizer).</summary>
    public IAsyncEnumerable<GeneratedToken> GenerateAsync(string prompt, GenerationOptions? options = null,
        CancellationToken cancellationToken = default) =>
        GenerateAsync(Encode(prompt), options, cancellationToken);

    /// <summary>Streams generated tokens for a prompt of token ids. Stops at EOS, at MaxTokens, or when the context is
    /// full (prompt and output together never exceed the model's context length).</summary>
    public async IAsyncEnumerable<GeneratedToken> GenerateAsync(IReadOnlyList<int> promptIds, GenerationOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var handle = Submit(promptIds, options, null, cancellationToken);
        await foreach (var t in handle.Tokens.WithCancellation(cancellationToken).ConfigureAwait(false))
        {
            yield return t;
            // Tokens already buffered would otherwise still flow after cancellation.
            cancellationToken.ThrowIfCancellationRequested();
        }
        await handle.Completion.ConfigureAwait(false); // surfaces a failure that ended the stream
    }

    /// <summary>Stops the scheduler (running requests fail with ObjectDisposedException) and frees device memory.</summary>
    public void Dispose()
    {
        _scheduler.Dispose();
        _cache.Dispose();
        _model.Dispose();
        _backend.Dispose();
    }
}
