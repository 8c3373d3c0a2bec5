using System.Diagnostics;
using System.Runtime.ExceptionServices;

namespace KvIlgpu.Compute;

/// <summary>Persistent worker threads for the managed backend's parallel loops, as llama.cpp keeps its own: a decode step
/// runs some sixty short matrix products one after another, and Parallel.For spent 2-5 us handing each one to the
/// thread pool on the development VM (perf hand-off), up to a sixth of a 16-bit decode step. Here the workers wait for
/// the next operation by spinning on a counter (yielding now and then to any thread ready on their core), so a
/// hand-over costs a cache line (0.3-0.5 us); after a quarter of a millisecond with no work they sleep on a monitor
/// instead, so an idle process burns no core. A part's exception reaches the caller as itself. One pool per thread
/// count is shared by every backend of the process; a call that finds the pool busy (another backend, or a loop inside
/// a loop) runs on Parallel.For as before, so callers never wait for each other.</summary>
internal sealed class SpinningWorkers
{
    private static readonly Dictionary<int, SpinningWorkers> Pools = [];

    /// <summary>The shared pool for parts-way loops (the caller is one of the parts).</summary>
    public static SpinningWorkers For(int parts)
    {
        lock (Pools)
        {
            if (!Pools.TryGetValue(parts, out var pool)) Pools[parts] = pool = new SpinningWorkers(parts);
            return pool;
        }
    }

    /// <summary>How long a worker spins for the next operation before it sleeps.</summary>
    private static readonly TimeSpan SpinTime = TimeSpan.FromMilliseconds(0.25);

    private readonly int _parts;
    private readonly object _gate = new();
    private int _busy;
    private Action<int>? _body;
    private int _generation;
    private int _pending;
    private int _sleepers;
    private Exception? _failure;
    [ThreadStatic] private static bool _isWorker;

    private SpinningWorkers(int parts)
    {
        _parts = parts;
        for (int w = 1; w < parts; w++)
        {
            int part = w;
            new Thread(() => Work(part)) { IsBackground = true, Name = $"kvilgpu worker {part}/{parts}" }.Start();
        }
    }

    /// <summary>Runs body(0) .. body(parts - 1), part 0 on the calling thread, and returns when all are done; the first
    /// exception a part throws is rethrown here.</summary>
    public void Run(Action<int> body)
    {
        // A flag, not a monitor: a monitor would let the thread running part 0 re-enter from inside its own part.
        if (_isWorker || Interlocked.CompareExchange(ref _busy, 1, 0) != 0)
        {
            try { Parallel.For(0, _parts, body); }
            catch (AggregateException e) { ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw(); }
            return;
        }
        try
        {
            _body = body;
            _failure = null;
            Volatile.Write(ref _pending, _parts - 1);
            Interlocked.Increment(ref _generation);
            if (Volatile.Read(ref _sleepers) > 0)
                lock (_gate) Monitor.PulseAll(_gate);
            try { body(0); }
            catch (Exception e) { Interlocked.CompareExchange(ref _failure, e, null); }
            var spin = new SpinWait();
            while (Volatile.Read(ref _pending) > 0) spin.SpinOnce(sleep1Threshold: -1);
            _body = null;
            if (_failure != null) ExceptionDispatchInfo.Capture(_failure).Throw();
        }
        finally { Volatile.Write(ref _busy, 0); }
    }

    private void Work(int part)
    {
        _isWorker = true;
        int seen = 0;
        while (true)
        {
            long idleSince = Stopwatch.GetTimestamp();
            for (int spins = 1; Volatile.Read(ref _generation) == seen; spins++)
            {
                if (Stopwatch.GetElapsedTime(idleSince) < SpinTime)
                {
                    // Now and then let a thread that is ready on this core run (Yield returns at once if none is).
                    if (spins % 64 == 0) Thread.Yield();
                    else Thread.SpinWait(8);
                    continue;
                }
                // Idle for a while: sleep until Run pulses (the increments on both sides are full fences, so either
                // Run sees this sleeper or this thread sees Run's new generation).
                lock (_gate)
                {
                    Interlocked.Increment(ref _sleepers);
                    while (Volatile.Read(ref _generation) == seen) Monitor.Wait(_gate);
                    Interlocked.Decrement(ref _sleepers);
                }
            }
            seen = Volatile.Read(ref _generation);
            try { _body!(part); }
            catch (Exception e) { Interlocked.CompareExchange(ref _failure, e, null); }
            Interlocked.Decrement(ref _pending);
        }
    }
}
