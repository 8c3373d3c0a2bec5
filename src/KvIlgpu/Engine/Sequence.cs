using System.Diagnostics;
using System.Threading.Channels;
using KvIlgpu.Tokenization;

namespace KvIlgpu.Engine;

/// <summary>A request inside the scheduler: its tokens so far (prompt then generated), how many of them are in the
/// cache, its cache slot while running, and where its tokens are streamed.</summary>
internal sealed class Sequence
{
    public required string Id { get; init; }
    public required List<int> Tokens { get; init; }
    public required int PromptLength { get; init; }
    public required GenerationOptions Options { get; init; }
    public required Sampler Sampler { get; init; }
    public required CancellationToken Cancellation { get; init; }
    public Channel<GeneratedToken> Output { get; } = Channel.CreateUnbounded<GeneratedToken>(new UnboundedChannelOptions
    {
        SingleReader = true, SingleWriter = true
    });
    public TaskCompletionSource<GenerationResult> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    public TextStreamer? Text { get; init; }

    /// <summary>Tokens of Tokens[] already written to the cache.</summary>
    public int Cached { get; set; }
    /// <summary>Cache slot (row of block tables) while running.</summary>
    public int? Slot { get; set; }
    /// <summary>Order of admission; the newest running sequence is preempted first.</summary>
    public long AdmitOrder { get; set; }
    public int Preemptions { get; set; }
    public Stopwatch Clock { get; } = Stopwatch.StartNew();
    public TimeSpan? FirstToken { get; set; }

    /// <summary>Tokens the current prefill covers (the prompt, or prompt and output when recomputing).</summary>
    public int PrefillLength { get; set; }
    /// <summary>Window sums of the prefill metric while a compressing sequence is being prefilled.</summary>
    public Compression.ObservationWindowMetric? Window { get; set; }
    public int DecodeStepsSinceCompression { get; set; }
    /// <summary>What the request holds in the cache, added up while it runs.</summary>
    public required KvUsageTracker Usage { get; init; }

    /// <summary>ThinK's window queries while the prefill runs: per layer, rows of [Heads * HeadDim] (null: not
    /// collecting).</summary>
    public List<float[]>[]? ThinKQueries { get; set; }
    /// <summary>ThinK's key channel mask once the prefill is done: per layer, [KvHeads * HeadDim] of 1 and 0.</summary>
    public float[][]? KeyMask { get; set; }

    /// <summary>Starts (or, after a preemption, restarts) ThinK's window for a new prefill.</summary>
    public void StartThinK()
    {
        KeyMask = null;
        ThinKQueries = Options.ThinK == null ? null : [.. Enumerable.Range(0, Layers).Select(_ => new List<float[]>())];
    }

    /// <summary>The model's layer count (for ThinK's per-layer state).</summary>
    public required int Layers { get; init; }

    public bool Compresses => Options.Compression is { Evicts: true };
    public int Generated => Tokens.Count - PromptLength;
    public int Pending => Tokens.Count - Cached;
}
