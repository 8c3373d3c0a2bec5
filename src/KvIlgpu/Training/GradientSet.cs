namespace KvIlgpu.Training;

/// <summary>ForwardBackward of every parameter, as tensors on a training backend.</summary>
internal sealed class GradientSet(ITrainingOps ops, Dictionary<string, TrainingTensor> tensors) : IDisposable
{
    public TrainingTensor this[string name] => tensors[name];
    public IEnumerable<string> Names => tensors.Keys;
    public void Zero() { foreach (var t in tensors.Values) ops.Zero(t); }

    /// <summary>this += other, parameter by parameter.</summary>
    public void Add(GradientSet other) { foreach (var (name, t) in tensors) ops.Add(t, other[name], t); }

    /// <summary>One parameter's gradient copied to the host.</summary>
    public float[] ToHost(string name)
    {
        var host = new float[tensors[name].Length];
        ops.ToHost(tensors[name], host);
        return host;
    }

    public void Dispose() { foreach (var t in tensors.Values) t.Dispose(); }
}
