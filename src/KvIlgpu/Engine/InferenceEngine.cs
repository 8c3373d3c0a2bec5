using System.Diagnostics;
using System.Runtime.CompilerServices;
using KvIlgpu.Compute;
using KvIlgpu.Models;
using KvIlgpu.Models.Loading;
using KvIlgpu.Tokenization;

namespace KvIlgpu.Engine;

/// <summary>A token produced by generation, with the text it adds (when the model has a tokenizer).</summary>
public readonly record struct GeneratedToken(int Id, string Text, int Position);

/// <summary>Timing of the last generation.</summary>
public sealed record GenerationStats(int PromptTokens, int GeneratedTokens, TimeSpan Prefill, TimeSpan Decode, string? StopReason)
{
    public double PrefillTokensPerSecond => PromptTokens / Math.Max(Prefill.TotalSeconds, 1e-9);
    public double DecodeTokensPerSecond => GeneratedTokens <= 1 ? 0 : (GeneratedTokens - 1) / Math.Max(Decode.TotalSeconds, 1e-9);
}

/// <summary>The library's entry point: a loaded model on a device, its tokenizer, and streaming generation.
/// <code>
/// using var engine = InferenceEngine.Load("model-dir");
/// await foreach (var t in engine.GenerateAsync("Once upon a time", new GenerationOptions(MaxTokens: 64)))
///     Console.Write(t.Text);
/// </code>
/// One generation runs at a time per engine; dispose it to free device memory.</summary>
public sealed class InferenceEngine : IDisposable
{
    private readonly LlamaModel _model;
    private readonly IComputeBackend _backend;
    private readonly SemaphoreSlim _gate = new(1, 1);

    public ModelConfig Config => _model.Config;
    public ITextTokenizer? Tokenizer { get; }
    public string DeviceName => _backend.Name;
    public GenerationStats? LastStats { get; private set; }

    private InferenceEngine(LlamaModel model, IComputeBackend backend, ITextTokenizer? tokenizer)
    {
        _model = model; _backend = backend; Tokenizer = tokenizer;
    }

    /// <summary>Loads a model (HF folder, .gguf or llama2.c .bin) onto the chosen device.</summary>
    public static InferenceEngine Load(string modelPath, EngineOptions? options = null, IProgress<LoadProgress>? progress = null, string? tokenizerPath = null)
    {
        options ??= new EngineOptions();
        var weights = ModelLoader.Load(modelPath, progress);
        var c = weights.Config;
        var tokenizer = tokenizerPath != null
            ? TokenizerLoader.Open(tokenizerPath, c.VocabSize, c.BosTokenId, c.EosTokenIds.FirstOrDefault())
            : TokenizerLoader.ForModel(modelPath, c.VocabSize, c.BosTokenId, c.EosTokenIds.Count > 0 ? c.EosTokenIds[0] : null);
        return FromWeights(weights, options, tokenizer, progress);
    }

    public static InferenceEngine FromWeights(LlamaWeights weights, EngineOptions? options = null, ITextTokenizer? tokenizer = null, IProgress<LoadProgress>? progress = null)
    {
        options ??= new EngineOptions();
        var backend = BackendFactory.Create(options.Device, options.CpuThreads);
        try
        {
            var upload = progress == null ? null : new Progress<(int Done, int Total)>(p => progress.Report(new LoadProgress("uploading to " + backend.Kind, p.Done, p.Total)));
            var model = new LlamaModel(weights, backend, options.PrefillChunk, upload);
            return new InferenceEngine(model, backend, tokenizer);
        }
        catch
        {
            backend.Dispose();
            throw;
        }
    }

    /// <summary>Encodes a prompt with the model's tokenizer (BOS first when the model has one).</summary>
    public IReadOnlyList<int> Encode(string prompt) =>
        (Tokenizer ?? throw new InvalidOperationException("this model has no tokenizer: pass token ids instead")).Encode(prompt, addBos: Tokenizer.BosId != null);

    public IAsyncEnumerable<GeneratedToken> GenerateAsync(string prompt, GenerationOptions? options = null, CancellationToken cancellationToken = default) =>
        GenerateAsync(Encode(prompt), options, cancellationToken);

    /// <summary>Streams generated tokens for a prompt of token ids. Stops at EOS, at MaxTokens, or when the context is
    /// full (prompt and output together never exceed the model's context length).</summary>
    public async IAsyncEnumerable<GeneratedToken> GenerateAsync(IReadOnlyList<int> promptIds, GenerationOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        options ??= new GenerationOptions();
        if (promptIds.Count == 0) throw new ArgumentException("the prompt is empty", nameof(promptIds));
        if (promptIds.Count > Config.MaxSeqLen)
            throw new ContextOverflowException(promptIds.Count, Config.MaxSeqLen);
        if (options.MaxTokens < 0) throw new ArgumentOutOfRangeException(nameof(options), "--max-tokens must be >= 0");
        var sampler = new Sampler(options.SamplingOrDefault);
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            using var cache = _model.CreateCache();
            var generated = new List<int>();
            string emitted = "";
            var prefillTimer = Stopwatch.StartNew();
            // Run compute off the caller's thread so UI and server callers stay responsive.
            var logits = await Task.Run(() => _model.Forward(cache, promptIds.ToArray()), cancellationToken).ConfigureAwait(false);
            prefillTimer.Stop();
            var decodeTimer = Stopwatch.StartNew();
            string? stop = null;
            while (true)
            {
                if (generated.Count >= options.MaxTokens) { stop = "max_tokens"; break; }
                // The next token would sit at position promptIds.Count + generated.Count.
                if (promptIds.Count + generated.Count >= Config.MaxSeqLen) { stop = "context_full"; break; }
                int next = sampler.Next(logits);
                if (options.StopAtEos && Config.EosTokenIds.Contains(next)) { stop = "eos"; break; }
                generated.Add(next);
                string text = "";
                if (Tokenizer != null)
                {
                    // Decode the whole output and emit what is new, so multi-byte characters split over tokens come out whole.
                    var full = Tokenizer.Decode(generated);
                    if (full.StartsWith(emitted, StringComparison.Ordinal) && !full.EndsWith('\uFFFD')) { text = full[emitted.Length..]; emitted = full; }
                }
                yield return new GeneratedToken(next, text, promptIds.Count + generated.Count - 1);
                cancellationToken.ThrowIfCancellationRequested();
                bool another = generated.Count < options.MaxTokens && promptIds.Count + generated.Count < Config.MaxSeqLen;
                if (another) logits = await Task.Run(() => _model.Forward(cache, [next]), cancellationToken).ConfigureAwait(false);
            }
            decodeTimer.Stop();
            LastStats = new GenerationStats(promptIds.Count, generated.Count, prefillTimer.Elapsed, decodeTimer.Elapsed, stop);
        }
        finally
        {
            _gate.Release();
        }
    }

    public void Dispose()
    {
        _model.Dispose();
        _backend.Dispose();
        _gate.Dispose();
    }
}
