using KvIlgpu.Compute;

namespace KvIlgpu.Tests.Compute;

/// <summary>The managed backend's persistent workers: every part runs exactly once per call, on as many threads as parts,
/// over many calls in a row (the spinning hand-over) and after the workers have gone to sleep; a part's exception reaches
/// the caller and leaves the pool usable; callers that find the pool busy (concurrent callers, a loop inside a loop) still
/// get every part run.</summary>
public class SpinningWorkersTests
{
    [Fact]
    public void Every_part_runs_once_per_call_on_its_own_thread()
    {
        var pool = SpinningWorkers.For(3);
        for (int call = 0; call < 2000; call++)
        {
            var hits = new int[3];
            var threads = new int[3];
            pool.Run(p => { Interlocked.Increment(ref hits[p]); threads[p] = Environment.CurrentManagedThreadId; });
            Assert.Equal([1, 1, 1], hits);
            Assert.Equal(3, threads.Distinct().Count());
            if (call == 1000) Thread.Sleep(20); // long enough for the workers to sleep; the next call must wake them
        }
    }

    [Fact]
    public void A_failing_part_reaches_the_caller_and_the_pool_keeps_working()
    {
        var pool = SpinningWorkers.For(2);
        var error = Assert.Throws<InvalidOperationException>(() => pool.Run(p =>
        {
            if (p == 1) throw new InvalidOperationException("part 1 failed");
        }));
        Assert.Equal("part 1 failed", error.Message);
        int sum = 0;
        pool.Run(p => Interlocked.Add(ref sum, p + 1));
        Assert.Equal(3, sum);
    }

    [Fact]
    public void Busy_and_nested_calls_still_run_every_part()
    {
        var pool = SpinningWorkers.For(2);
        long total = 0;
        Parallel.For(0, 8, _ =>
        {
            for (int i = 0; i < 200; i++)
                pool.Run(p => pool.Run(q => Interlocked.Add(ref total, 1 + p * 2 + q)));
        });
        // Each outer call runs parts 0 and 1, each of which runs an inner call of parts 0 and 1: 1 + 2 + 3 + 4 = 10.
        Assert.Equal(8 * 200 * 10, total);
    }
}
