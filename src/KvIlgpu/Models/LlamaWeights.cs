using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace KvIlgpu.Models;

/// <summary>A whole Llama-family model on the host: configuration plus every weight.</summary>
public sealed class LlamaWeights
{
    /// <summary>The model's shape and hyper-parameters.</summary>
    public ModelConfig Config { get; }
    /// <summary>The token embedding [vocab, dim].</summary>
    public WeightTensor TokenEmbedding { get; }
    /// <summary>The decoder layers' weights, first to last.</summary>
    public IReadOnlyList<LayerWeights> Layers { get; }
    /// <summary>The RMSNorm weight before the classifier.</summary>
    public WeightTensor FinalNorm { get; }
    /// <summary>The classifier; the token embedding itself when the model ties them.</summary>
    public WeightTensor Output { get; }
    /// <summary>The file or folder the weights came from.</summary>
    public string Source { get; }

    /// <summary>A model from its weights; every shape is checked against the config (an error names the tensor).</summary>
    public LlamaWeights(ModelConfig config, WeightTensor tokenEmbedding, IReadOnlyList<LayerWeights> layers,
        WeightTensor finalNorm, WeightTensor output, string source)
    {
        Config = config; TokenEmbedding = tokenEmbedding; Layers = layers; FinalNorm = finalNorm; Output = output; Source = source;
        CheckShapes();
        foreach (var t in AllTensors().Distinct()) CheckValues(t);
    }

    /// <summary>Every element finite and of a plausible size (|w| &lt;= <see cref="PlausibleMagnitude"/>): a NaN, an
    /// infinity or a flipped exponent bit is reported at load with the tensor, row and column, instead of surfacing later
    /// as NaN logits. One vectorised pass per tensor; only a failing tensor is scanned again, to find the element.</summary>
    private void CheckValues(WeightTensor t)
    {
        if (t.Blocks != null)
        {
            long block = Quantization.QuantFormats.FirstNonFiniteScale(t.Type, t.Blocks);
            if (block < 0) return;
            long perRow = t.Cols / Quantization.QuantFormats.BlockElements(t.Type);
            throw new InvalidModelException(Source, $"tensor {t.Name}: the scale of {Quantization.QuantFormats.GgmlName(t.Type)} " +
                $"block {block % perRow} of row {block / perRow} is NaN or infinite");
        }
        int bad = t.Type switch
        {
            // MaxMagnitude is NaN when any element is NaN, and infinity or a huge value fails the bound alike.
            WeightType.F32 => MathF.Abs(TensorPrimitives.MaxMagnitude<float>(t.F32)) <= PlausibleMagnitude ? -1
                : Array.FindIndex(t.F32!, v => !(MathF.Abs(v) <= PlausibleMagnitude)),
            // f16 cannot exceed the bound (its largest is 65,504): only NaN and infinity can be wrong.
            WeightType.F16 => TensorPrimitives.IsFiniteAll<Half>(MemoryMarshal.Cast<ushort, Half>(t.Bits16)) ? -1
                : Array.FindIndex(t.Bits16!, b => (b & 0x7C00) == 0x7C00),
            // bf16 by its bits: positive floats order like their bit patterns, and NaN and infinity lie above every finite.
            _ => FirstBf16MagnitudeAbove(t.Bits16!, Bf16OfPlausibleMagnitude),
        };
        if (bad < 0) return;
        float value = t.Type switch
        {
            WeightType.F32 => t.F32![bad],
            WeightType.F16 => (float)BitConverter.UInt16BitsToHalf(t.Bits16![bad]),
            _ => BitConverter.Int32BitsToSingle(t.Bits16![bad] << 16),
        };
        string where = $"at element {bad} (row {bad / t.Cols}, column {bad % t.Cols})";
        throw new InvalidModelException(Source, float.IsFinite(value)
            ? $"tensor {t.Name} holds {value:G3} {where}: no trained weight is near that large (the check is |w| <= " +
                $"{PlausibleMagnitude:G}); the file is probably damaged"
            : $"tensor {t.Name} holds {(float.IsNaN(value) ? "NaN" : "an infinity")} {where}");
    }

    private const ushort Bf16OfPlausibleMagnitude = 0x4974; // bfloat16 bits of 1e6 (999,424)

    /// <summary>The largest weight magnitude accepted. Trained weights stay far below it (every model ever shipped in f16
    /// fits in 65,504); a flipped exponent bit of an ordinary weight lands far above it.</summary>
    public const float PlausibleMagnitude = 1e6f;

    /// <summary>The first bfloat16 whose magnitude bits exceed limit (so NaN and infinity too), or -1.</summary>
    private static int FirstBf16MagnitudeAbove(ushort[] bits, ushort limit)
    {
        var magnitude = new Vector<ushort>(0x7FFF);
        var bound = new Vector<ushort>(limit);
        int i = 0;
        for (; i + Vector<ushort>.Count <= bits.Length; i += Vector<ushort>.Count)
            if (Vector.GreaterThanAny(new Vector<ushort>(bits, i) & magnitude, bound)) break;
        for (; i < bits.Length; i++)
            if ((bits[i] & 0x7FFF) > limit) return i;
        return -1;
    }

    /// <summary>Parameters, counting a tied embedding once.</summary>
    public long ParameterCount => AllTensors().Distinct().Sum(t => t.Length);

    /// <summary>Bytes of all weights as stored, counting a tied embedding once.</summary>
    public long ByteSize => AllTensors().Distinct().Sum(t => t.ByteSize);

    /// <summary>Every tensor (a tied embedding twice, as embedding and output).</summary>
    public IEnumerable<WeightTensor> AllTensors()
    {
        yield return TokenEmbedding;
        foreach (var l in Layers)
        {
            yield return l.AttentionNorm; yield return l.Wq; yield return l.Wk; yield return l.Wv; yield return l.Wo;
            if (l.Bq != null) yield return l.Bq;
            if (l.Bk != null) yield return l.Bk;
            if (l.Bv != null) yield return l.Bv;
            yield return l.FfnNorm; yield return l.WGate; yield return l.WDown; yield return l.WUp;
        }
        yield return FinalNorm;
        yield return Output;
    }

    /// <summary>A copy with every matrix converted to another stored precision (norms and biases stay f32).</summary>
    public LlamaWeights ConvertMatrices(WeightType type)
    {
        WeightTensor C(WeightTensor t) => t.ConvertTo(type);
        var layers = Layers.Select(l => l with
        {
            Wq = C(l.Wq),
            Wk = C(l.Wk),
            Wv = C(l.Wv),
            Wo = C(l.Wo),
            WGate = C(l.WGate),
            WDown = C(l.WDown),
            WUp = C(l.WUp),
        }).ToList();
        var emb = C(TokenEmbedding);
        var output = Config.TiedEmbeddings ? emb : C(Output);
        return new LlamaWeights(Config, emb, layers, FinalNorm, output, Source);
    }

    private void CheckShapes()
    {
        var c = Config;
        void Expect(WeightTensor t, int rows, int cols)
        {
            if (t.Rows != rows || t.Cols != cols)
                throw new InvalidModelException(Source, $"tensor {t.Name} has shape [{t.Rows}, {t.Cols}], expected [{rows}, {cols}]");
        }
        Expect(TokenEmbedding, c.VocabSize, c.Dim);
        if (Layers.Count != c.Layers) throw new InvalidModelException(Source, $"{Layers.Count} layers found, config says {c.Layers}");
        foreach (var l in Layers)
        {
            Expect(l.AttentionNorm, 1, c.Dim);
            Expect(l.Wq, c.QDim, c.Dim); Expect(l.Wk, c.KvDim, c.Dim); Expect(l.Wv, c.KvDim, c.Dim); Expect(l.Wo, c.Dim, c.QDim);
            if (l.Bq != null) Expect(l.Bq, 1, c.QDim);
            if (l.Bk != null) Expect(l.Bk, 1, c.KvDim);
            if (l.Bv != null) Expect(l.Bv, 1, c.KvDim);
            Expect(l.FfnNorm, 1, c.Dim);
            Expect(l.WGate, c.HiddenDim, c.Dim); Expect(l.WUp, c.HiddenDim, c.Dim); Expect(l.WDown, c.Dim, c.HiddenDim);
        }
        Expect(FinalNorm, 1, c.Dim);
        Expect(Output, c.VocabSize, c.Dim);
    }
}
