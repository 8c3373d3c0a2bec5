using System.CommandLine;
using System.Text.Json;
using KvIlgpu.Models.Loading;
using KvIlgpu.Tokenization;

namespace KvIlgpu.Cli;

internal static class TokenizeCommand
{
    public static Command Create()
    {
        var model = new Option<string?>("--model") { Description = "model whose tokenizer to use" };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "tokenizer.model, tokenizer.json or tokenizer.bin" };
        var vocab = new Option<int?>("--vocab-size") { Description = "vocabulary size (needed for a bare tokenizer.bin)" };
        var text = new Option<string>("--text") { Description = "text to encode", Required = true };
        var bos = new Option<bool>("--bos") { Description = "prepend the BOS token" };
        var json = new Option<bool>("--json") { Description = "print one JSON object" };
        var cmd = new Command("tokenize", "encode text and show ids and pieces") { model, tokenizer, vocab, text, bos, json };
        cmd.SetAction((r, ct) => CliErrors.Run(() =>
        {
            string? m = r.GetValue(model), t = r.GetValue(tokenizer);
            if ((m == null) == (t == null)) throw new ArgumentException("give exactly one of --model or --tokenizer");
            ITextTokenizer tok;
            if (t != null) tok = TokenizerLoader.Open(t, r.GetValue(vocab));
            else
            {
                var w = ModelLoader.Load(m!);
                tok = TokenizerLoader.ForModel(m!, w.Config.VocabSize, w.Config.BosTokenId,
                    w.Config.EosTokenIds.Count > 0 ? w.Config.EosTokenIds[0] : null)
                    ?? throw new FileNotFoundException($"{m}: no tokenizer found beside the model (tokenizer.model, tokenizer.json or " +
                        $"tokenizer.bin); pass --tokenizer");
            }
            var ids = tok.Encode(r.GetValue(text)!, r.GetValue(bos));
            var pieces = ids.Select(tok.Piece).ToList();
            if (r.GetValue(json))
                Console.WriteLine(JsonSerializer.Serialize(new { ids, pieces, count = ids.Count }));
            else
            {
                Console.WriteLine(string.Join(" ", ids));
                Console.WriteLine(string.Join(" | ", pieces));
            }
            return Task.FromResult(0);
        }));
        return cmd;
    }
}
