using KvIlgpu.Models;
using KvIlgpu.Models.Loading;
using KvIlgpu.Tests.Support;

namespace KvIlgpu.Tests.Models;

/// <summary>The engine against llama2.c's own output for ../shared/golden/tiny-gqa.bin.</summary>
[Collection("backends")]
public class GoldenModelTests
{
    [SharedTheory]
    [MemberData(nameof(Backends.All), MemberType = typeof(Backends))]
    public void Greedy_decoding_reproduces_every_golden_token_and_logit(string backendName)
    {
        var golden = GoldenRun.Load(SharedData.Path_("golden", "tiny-gqa.json"));
        var weights = ModelLoader.Load(SharedData.Path_("golden", "tiny-gqa.bin"));
        using var model = new LlamaModel(weights, Backends.Get(backendName));
        using var cache = model.CreateCache();

        // Prompt tokens one by one, so the logits of every position are observable.
        var produced = new List<int>();
        int token = golden.Prompt[0];
        for (int pos = 0; pos < weights.Config.MaxSeqLen; pos++)
        {
            var logits = model.Forward(cache, [token]);
            if (golden.Logits.TryGetValue(pos, out var expected))
                Compare.Close(logits, expected, 1e-4, $"logits at position {pos}");
            int next = pos + 1 < golden.Prompt.Length ? golden.Prompt[pos + 1] : ArgMax(logits);
            produced.Add(next);
            token = next;
        }
        Assert.Equal(golden.Tokens, produced);
    }

    [SharedFact]
    public void Prefill_of_the_whole_prompt_matches_token_by_token_logits()
    {
        var golden = GoldenRun.Load(SharedData.Path_("golden", "tiny-gqa.json"));
        var weights = ModelLoader.Load(SharedData.Path_("golden", "tiny-gqa.bin"));
        using var model = new LlamaModel(weights, Backends.Get("ilgpu-cpu"), maxChunkRows: 16);
        using var cache = model.CreateCache();
        // 64 golden tokens fed as one prompt: prefill runs in 4 chunks through the tiled GEMM.
        int[] prompt = [golden.Prompt[0], .. golden.Tokens.Take(63)];
        var all = model.Forward(cache, prompt, allLogits: true);
        int vocab = weights.Config.VocabSize;
        foreach (int pos in new[] { 0, 1, 63 })
            Compare.Close(all.AsSpan(pos * vocab, vocab), golden.Logits[pos], 1e-4, $"prefill logits at position {pos}");
    }

    private static int ArgMax(float[] v)
    {
        int best = 0;
        for (int i = 1; i < v.Length; i++) if (v[i] > v[best]) best = i;
        return best;
    }
}
