using KvIlgpu.Compute;
using KvIlgpu.Engine;
using KvIlgpu.Tests.Support;

namespace KvIlgpu.Tests.Engine;

public class EngineTests
{
    [Fact]
    public async Task Streaming_generation_matches_the_reference_greedy_path_and_honours_cancellation()
    {
        var w = TestModels.Random(TestModels.Config(seq: 40), seed: 8);
        using var engine = InferenceEngine.FromWeights(w, new EngineOptions(DeviceKind.Cpu));
        var reference = ReferenceLlama.From(w);
        int[] prompt = [1, 7, 3];
        double[] logits = [];
        foreach (var t in prompt) logits = reference.Step(t);
        var expected = new List<int>();
        for (int i = 0; i < 10; i++)
        {
            int next = Array.IndexOf(logits, logits.Max());
            expected.Add(next);
            logits = reference.Step(next);
        }
        var got = new List<int>();
        await foreach (var t in engine.GenerateAsync(prompt, new GenerationOptions(10, StopAtEos: false))) got.Add(t.Id);
        Assert.Equal(expected, got);

        using var cts = new CancellationTokenSource();
        var partial = new List<int>();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var t in engine.GenerateAsync(prompt, new GenerationOptions(30, StopAtEos: false), cts.Token))
            {
                partial.Add(t.Id);
                if (partial.Count == 3) cts.Cancel();
            }
        });
        Assert.Equal(3, partial.Count);
        // The engine is still usable after a cancelled request.
        got.Clear();
        await foreach (var t in engine.GenerateAsync(prompt, new GenerationOptions(10, StopAtEos: false))) got.Add(t.Id);
        Assert.Equal(expected, got);
    }

    [Fact]
    public void Sampler_respects_top_k_top_p_and_seed()
    {
        float[] logits = [0f, 5f, 4.9f, -3f, 4.8f, 1f];
        var greedy = new Sampler(SamplingOptions.Greedy);
        Assert.Equal(1, greedy.Next(logits));
        var topK = new Sampler(new SamplingOptions(Temperature: 5f, TopK: 2, Seed: 1));
        var drawn = Enumerable.Range(0, 500).Select(_ => topK.Next(logits)).ToHashSet();
        Assert.Equal(new HashSet<int> { 1, 2 }, drawn);
        // With T=1 the three top tokens hold ~99.9%; top-p 0.5 keeps the smallest prefix reaching 50%: tokens 1 and 2.
        var topP = new Sampler(new SamplingOptions(Temperature: 1f, TopP: 0.5f, Seed: 2));
        Assert.Equal(new HashSet<int> { 1, 2 }, Enumerable.Range(0, 500).Select(_ => topP.Next(logits)).ToHashSet());
        var a = new Sampler(new SamplingOptions(1f, Seed: 42));
        var b = new Sampler(new SamplingOptions(1f, Seed: 42));
        Assert.Equal(Enumerable.Range(0, 50).Select(_ => a.Next(logits)), Enumerable.Range(0, 50).Select(_ => b.Next(logits)));
        Assert.Equal("TopP", Assert.Throws<InvalidOptionException>(() => new Sampler(new SamplingOptions(TopP: 0f))).Option);
    }
}
