using System.Text.Json;
using KvIlgpu.Models;
using KvIlgpu.Tests.Support;
using KvIlgpu.Tests.Tokenization;

namespace KvIlgpu.Tests.Cli;

public class CliTests
{
    [SharedFact]
    public void Generate_json_reproduces_the_golden_tokens_and_stops_at_the_context_length()
    {
        var golden = GoldenRun.Load(SharedData.Path_("golden", "tiny-gqa.json"));
        // Asking for more than fits: prompt (3) + output may not exceed the context (256), so 253 come out.
        var (code, stdout, stderr) = CliRunner.Run("generate", "--model", SharedData.Path_("golden", "tiny-gqa.bin"),
            "--prompt-ids", "1,5,9", "--max-tokens", "400", "--temperature", "0", "--json", "--device", "cpu");
        Assert.True(code == 0, stderr);
        var json = JsonDocument.Parse(stdout).RootElement;
        var ids = json.GetProperty("token_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        Assert.Equal(golden.Tokens[2..255], ids);
        Assert.Equal("context_full", json.GetProperty("stop_reason").GetString());
        Assert.True(json.GetProperty("decode_tokens_per_s").GetDouble() > 0);
        Assert.True(json.GetProperty("prefill_tokens_per_s").GetDouble() > 0);
    }

    /// <summary>convert to a folder writes a Hugging Face model with the source folder's tokenizer: the 16-wide shipped
    /// model kept in f32 generates the same greedy tokens from its copy, and a bf16 copy runs and says it is bf16.</summary>
    [Fact]
    public void Convert_to_a_folder_writes_a_hugging_face_model_with_its_tokenizer()
    {
        var root = new DirectoryInfo(AppContext.BaseDirectory);
        while (!File.Exists(Path.Combine(root.FullName, "KvIlgpu.sln"))) root = root.Parent!;
        string source = Path.Combine(root.FullName, "weights", "head16");
        using var dir = new TempDir();
        string[] Generate(string model) => ["generate", "--model", model, "--prompt", "The jury said that", "--max-tokens", "12",
            "--temperature", "0", "--json"];
        var f32 = CliRunner.Run("convert", "--model", source, "--out", dir.File("f32"), "--dtype", "f32");
        Assert.True(f32.ExitCode == 0, f32.Stderr);
        Assert.Contains("copied tokenizer.json", f32.Stdout);
        var original = CliRunner.Run(Generate(source));
        var copy = CliRunner.Run(Generate(dir.File("f32")));
        Assert.True(original.ExitCode == 0 && copy.ExitCode == 0, original.Stderr + copy.Stderr);
        Assert.Equal(JsonDocument.Parse(original.Stdout).RootElement.GetProperty("token_ids").ToString(),
            JsonDocument.Parse(copy.Stdout).RootElement.GetProperty("token_ids").ToString());

        var bf16 = CliRunner.Run("convert", "--model", source, "--out", dir.File("bf16"), "--dtype", "bf16");
        Assert.True(bf16.ExitCode == 0, bf16.Stderr);
        Assert.Equal("bfloat16", JsonDocument.Parse(File.ReadAllText(dir.File("bf16/config.json"))).RootElement
            .GetProperty("torch_dtype").GetString());
        Assert.True(new FileInfo(dir.File("bf16/model.safetensors")).Length < 0.6 * new FileInfo(dir.File("f32/model.safetensors")).Length);
        var run = CliRunner.Run(Generate(dir.File("bf16")));
        Assert.True(run.ExitCode == 0, run.Stderr);

        var onItself = CliRunner.Run("convert", "--model", dir.File("f32"), "--out", dir.File("f32"));
        Assert.Equal(1, onItself.ExitCode);
        Assert.Contains("--out", onItself.Stderr);
    }

    [Fact]
    public void Generate_and_tokenize_with_a_text_prompt_and_a_tokenizer_beside_the_model()
    {
        using var dir = new TempDir();
        var tokPath = TokenizerTests.WriteLlama2cTokenizer(dir, out int vocab);
        var w = TestModels.Random(TestModels.Config(vocab: vocab), seed: 5);
        TestModels.WriteLlama2c(dir.File("model.bin"), w);
        var (code, stdout, stderr) = CliRunner.Run("generate", "--model", dir.File("model.bin"), "--prompt", "hello world",
            "--max-tokens", "5", "--temperature", "0.9", "--seed", "3", "--json");
        Assert.True(code == 0, stderr);
        var json = JsonDocument.Parse(stdout).RootElement;
        Assert.Equal(5, json.GetProperty("token_ids").GetArrayLength());
        Assert.True(json.TryGetProperty("text", out _));
        // Same seed, same tokens.
        var again = JsonDocument.Parse(CliRunner.Run("generate", "--model", dir.File("model.bin"), "--prompt", "hello world",
            "--max-tokens", "5", "--temperature", "0.9", "--seed", "3", "--json").Stdout).RootElement;
        Assert.Equal(json.GetProperty("token_ids").ToString(), again.GetProperty("token_ids").ToString());

        var tok = CliRunner.Run("tokenize", "--model", dir.File("model.bin"), "--text", "hello world", "--json");
        Assert.True(tok.ExitCode == 0, tok.Stderr);
        var tj = JsonDocument.Parse(tok.Stdout).RootElement;
        Assert.Equal(5, tj.GetProperty("ids").GetArrayLength());
        Assert.Equal(" hello", tj.GetProperty("pieces")[0].GetString());

        var info = CliRunner.Run("info", "--model", dir.File("model.bin"));
        Assert.True(info.ExitCode == 0, info.Stderr);
        Assert.Contains("4 query, 2 key/value", info.Stdout);
    }

    public static IEnumerable<object[]> BadInputs()
    {
        yield return ["missing file", new Func<TempDir, string[]>(d => ["generate", "--model", d.File("nope.bin"), "--prompt-ids", "1"]),
            "nope.bin"];
        yield return ["truncated llama2.c", new Func<TempDir, string[]>(d =>
        {
            TestModels.WriteLlama2c(d.File("m.bin"), TestModels.Random(TestModels.Config(), 1));
            var bytes = File.ReadAllBytes(d.File("m.bin"));
            File.WriteAllBytes(d.File("m.bin"), bytes[..(bytes.Length / 2)]);
            return ["generate", "--model", d.File("m.bin"), "--prompt-ids", "1"];
        }), "truncated"];
        yield return ["truncated safetensors tensor", new Func<TempDir, string[]>(d =>
        {
            TestModels.WriteHuggingFace(d.File("hf"), TestModels.Random(TestModels.Config(), 1), WeightType.F32);
            var p = Path.Combine(d.File("hf"), "model.safetensors");
            var bytes = File.ReadAllBytes(p);
            File.WriteAllBytes(p, bytes[..(bytes.Length - 100)]);
            return ["info", "--model", d.File("hf")];
        }), "truncated: tensor"];
        yield return ["unknown dtype", new Func<TempDir, string[]>(d =>
        {
            TestModels.WriteHuggingFace(d.File("hf"), TestModels.Random(TestModels.Config(), 1), WeightType.F32);
            var p = Path.Combine(d.File("hf"), "model.safetensors");
            var bytes = File.ReadAllBytes(p);
            var text = System.Text.Encoding.Latin1.GetString(bytes);
            int at = text.IndexOf("\"model.embed_tokens.weight\":{\"dtype\":\"F32\"", StringComparison.Ordinal);
            Assert.True(at >= 0);
            System.Text.Encoding.ASCII.GetBytes("\"model.embed_tokens.weight\":{\"dtype\":\"I32\"").CopyTo(bytes, at);
            File.WriteAllBytes(p, bytes);
            return ["info", "--model", d.File("hf")];
        }), "dtype I32"];
        yield return ["shape mismatch", new Func<TempDir, string[]>(d =>
        {
            TestModels.WriteHuggingFace(d.File("hf"), TestModels.Random(TestModels.Config(), 1), WeightType.F32);
            var cfg = Path.Combine(d.File("hf"), "config.json");
            File.WriteAllText(cfg, File.ReadAllText(cfg).Replace("\"intermediate_size\":80", "\"intermediate_size\":96"));
            return ["info", "--model", d.File("hf")];
        }), "mlp.gate_proj.weight has shape [80, 48], expected [96, 48]"];
        yield return ["prompt longer than the context", new Func<TempDir, string[]>(d =>
        {
            TestModels.WriteLlama2c(d.File("m.bin"), TestModels.Random(TestModels.Config(seq: 8), 1));
            return ["generate", "--model", d.File("m.bin"), "--prompt-ids", "1,2,3,4,5,6,7,8,9"];
        }), "context holds 8"];
        yield return ["unknown device", new Func<TempDir, string[]>(d =>
        {
            TestModels.WriteLlama2c(d.File("m.bin"), TestModels.Random(TestModels.Config(), 1));
            return ["generate", "--model", d.File("m.bin"), "--prompt-ids", "1", "--device", "tpu"];
        }), "unknown device 'tpu'"];
        yield return ["negative attention sinks", new Func<TempDir, string[]>(d =>
        {
            TestModels.WriteLlama2c(d.File("m.bin"), TestModels.Random(TestModels.Config(seq: 32), 1));
            return ["generate", "--model", d.File("m.bin"), "--prompt-ids", "1,2,3", "--kv-policy", "kvcompress", "--kv-budget", "8",
                "--kv-sinks", "-1"];
        }), "--kv-sinks must be >= 0 (got -1)"];
        yield return ["a budget below one token, named by its flag and not its library property", new Func<TempDir, string[]>(d =>
        {
            TestModels.WriteLlama2c(d.File("m.bin"), TestModels.Random(TestModels.Config(seq: 32), 1));
            return ["generate", "--model", d.File("m.bin"), "--prompt-ids", "1,2,3", "--kv-policy", "kvcompress", "--kv-budget", "0"];
        }), "error: --kv-budget must be >= 1 (got 0)"];
        yield return ["a bad batch line names its field", new Func<TempDir, string[]>(d =>
        {
            TestModels.WriteLlama2c(d.File("m.bin"), TestModels.Random(TestModels.Config(seq: 32), 1));
            File.WriteAllText(d.File("r.jsonl"), "{\"prompt_ids\": [1, 2], \"kv_policy\": \"snapkv\", \"kv_budget\": 4, \"top_p\": 0}\n");
            return ["batch", "--model", d.File("m.bin"), "--requests", d.File("r.jsonl")];
        }), "r.jsonl:1: top_p must be in (0, 1] (got 0)"];
        yield return ["an eval option, named by its flag", new Func<TempDir, string[]>(d =>
        {
            TestModels.WriteLlama2c(d.File("m.bin"), TestModels.Random(TestModels.Config(seq: 32), 1));
            return ["eval", "--model", d.File("m.bin"), "--segments", "0", "--budgets", "1/2,half"];
        }), "error: --budgets: 'half' is neither 1/N nor a positive token count"];
        yield return ["eval --out that is a file, refused before the model loads", new Func<TempDir, string[]>(d =>
        {
            File.WriteAllText(d.File("taken"), "");
            return ["eval", "--model", d.File("absent.bin"), "--segments", "0", "--passkey-trials", "1", "--out", d.File("taken")];
        }), "is a file, not a folder"];
        yield return ["train --out that is a file, refused before training starts", new Func<TempDir, string[]>(d =>
        {
            File.WriteAllText(d.File("taken"), "");
            File.WriteAllText(d.File("c.json"), "{\"steps\": 1}");
            return ["train", "--config", d.File("c.json"), "--out", d.File("taken")];
        }), "is a file, not a folder"];
        yield return ["a passkey length list with a bad item", new Func<TempDir, string[]>(d =>
            ["passkey", "--model", d.File("absent.bin"), "--lengths", "512,x"]), "--lengths: 'x' is not an integer of at least 9"];
        yield return ["passkey depths outside 0..1", new Func<TempDir, string[]>(d =>
            ["passkey", "--model", d.File("absent.bin"), "--depths", "0.5,1.5"]), "--depths: '1.5' is not a number in [0, 1]"];
        yield return ["an eval task length list that is empty", new Func<TempDir, string[]>(d =>
            ["eval", "--model", d.File("absent.bin"), "--segments", "0", "--passkey-trials", "1", "--task-lengths", ","]),
            "--task-lengths is empty"];
        yield return ["token id outside the vocabulary", new Func<TempDir, string[]>(d =>
        {
            TestModels.WriteLlama2c(d.File("m.bin"), TestModels.Random(TestModels.Config(), 1));
            return ["generate", "--model", d.File("m.bin"), "--prompt-ids", "1,999"];
        }), "token id 999"];
    }

    [Theory]
    [MemberData(nameof(BadInputs))]
    public void Bad_input_gives_a_clear_message_and_nonzero_exit(string what, Func<TempDir, string[]> setup, string expected)
    {
        using var dir = new TempDir();
        var (code, stdout, stderr) = CliRunner.Run(setup(dir));
        Assert.True(code != 0, $"{what}: exit code 0; stdout {stdout}");
        Assert.Contains(expected, stderr + stdout); // batch reports a bad line as a JSON error line on stdout
        Assert.DoesNotContain("   at ", stderr + stdout); // no stack trace
    }

    /// <summary>A value the parser cannot read gives one error line and a pointer to the command's help, not the whole
    /// help text.</summary>
    [Fact]
    public void A_parse_error_is_one_line_and_a_hint_to_help()
    {
        var (code, stdout, stderr) = CliRunner.Run("generate", "--max-tokens", "many");
        Assert.Equal(1, code);
        Assert.Equal(["error: Cannot parse argument 'many' for option '--max-tokens' as expected type 'System.Int32'.",
            "see 'kvilgpu generate --help'"], stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal("", stdout);
    }
}
