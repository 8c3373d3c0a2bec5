using KvIlgpu.Models.Loading;
using Spectre.Console;

namespace KvIlgpu.Cli;

/// <summary>Progress bars on stderr (stdout stays clean for generated text and JSON).</summary>
internal static class ProgressDisplay
{
    public static readonly IAnsiConsole Err = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });

    /// <summary>Runs a load with a progress bar per stage.</summary>
    public static T Load<T>(string what, Func<IProgress<LoadProgress>, T> load)
    {
        if (Console.IsErrorRedirected)
        {
            Console.Error.WriteLine($"loading {what} ...");
            return load(new Progress<LoadProgress>(_ => { }));
        }
        T result = default!;
        Err.Progress().AutoClear(true).Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(),
            new SpinnerColumn())
            .Start(ctx =>
            {
                var tasks = new Dictionary<string, ProgressTask>();
                var progress = new SyncProgress<LoadProgress>(p =>
                {
                    if (!tasks.TryGetValue(p.Stage, out var t)) tasks[p.Stage] = t = ctx.AddTask(p.Stage, maxValue: Math.Max(1,
                        p.BytesTotal));
                    t.MaxValue = Math.Max(1, p.BytesTotal);
                    t.Value = p.BytesDone;
                });
                result = load(progress);
            });
        return result;
    }

    /// <summary>Runs work that reports (done, total) with one progress bar labelled what (plain lines when stderr is a log).
    /// </summary>
    public static T Steps<T>(string what, Func<IProgress<(int Done, int Total)>, T> work)
    {
        if (Console.IsErrorRedirected)
        {
            int lastTenth = -1;
            return work(new SyncProgress<(int Done, int Total)>(p =>
            {
                int tenth = p.Total > 0 ? p.Done * 10 / p.Total : 0;
                if (tenth != lastTenth) Console.Error.WriteLine($"{what} {p.Done}/{p.Total}");
                lastTenth = tenth;
            }));
        }
        T result = default!;
        Err.Progress().AutoClear(true).Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(),
            new RemainingTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask(what);
                result = work(new SyncProgress<(int Done, int Total)>(p => { task.MaxValue = Math.Max(1, p.Total); task.Value = p.Done; }));
            });
        return result;
    }
}

/// <summary>Reports on the calling thread (Progress&lt;T&gt; would post to the thread pool and arrive late).</summary>
internal sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
