using System.CommandLine;
using KvIlgpu.Models.Loading;
using KvIlgpu.Tokenization;

namespace KvIlgpu.Cli;

internal static class InfoCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "model: HF folder, .gguf or llama2.c .bin", Required = true };
        var cmd = new Command("info", "print a model's architecture") { model };
        cmd.SetAction((r, ct) => CliErrors.Run(() =>
        {
            string path = r.GetValue(model)!;
            var w = ProgressDisplay.Load(path, p => ModelLoader.Load(path, p));
            var c = w.Config;
            var types = w.AllTensors().GroupBy(t => t.Type).Select(g => $"{g.Key} x{g.Count()}");
            var tok = TokenizerLoader.ForModel(path, c.VocabSize, c.BosTokenId, c.EosTokenIds.Count > 0 ? c.EosTokenIds[0] : null);
            // What one token costs in the KV cache, every (layer, KV head) together, in each storage type.
            var auto = Engine.EngineOptions.ResolveStorage(KvIlgpu.Cache.KvStorageType.Auto, w);
            string kvCost = string.Join(", ", new[] { Cache.KvStorageType.F32, Cache.KvStorageType.F16, Cache.KvStorageType.BF16,
                Cache.KvStorageType.Q8 }.Select(t => $"{KvStorageCliOption.Name(t)} {c.Layers * c.KvHeads
                    * Cache.KvStorageSizes.BytesPerToken(t, c.HeadDim, c.HeadDim):N0}"));
            Console.WriteLine($"""
                source         {w.Source}
                architecture   {c.Architecture}
                parameters     {w.ParameterCount:N0} ({w.ByteSize / 1e6:F1} MB as stored: {string.Join(", ", types)})
                dim            {c.Dim}
                hidden_dim     {c.HiddenDim}
                layers         {c.Layers}
                heads          {c.Heads} query, {c.KvHeads} key/value (group {c.GroupSize}), head_dim {c.HeadDim}
                vocab          {c.VocabSize}
                context        {c.MaxSeqLen}
                rope           theta {c.RopeTheta}, {c.RopeLayout}{(c.RopeScaling is { } s ? $", scaling {s.Type} x{s.Factor}" : "")}
                rms_norm_eps   {c.RmsNormEps}
                qkv bias       {c.AttentionBias}
                tied embedding {c.TiedEmbeddings}
                bos / eos      {c.BosTokenId?.ToString() ?? "-"} / {(c.EosTokenIds.Count > 0 ? string.Join(",", c.EosTokenIds) : "-")}
                tokenizer      {(tok == null ? "none found" : tok.GetType().Name + $" ({tok.VocabularySize} tokens)")}
                KV per token   {kvCost} bytes (default storage {KvStorageCliOption.Name(auto)})
                """);
            return Task.FromResult(0);
        }));
        return cmd;
    }
}
