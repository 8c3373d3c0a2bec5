using KvIlgpu.Compute;

namespace KvIlgpu.Cache;

/// <summary>A contiguous K/V cache for one sequence: per layer [MaxSeqLen, KvDim] for keys and for values,
/// on the backend's device. Length is how many positions hold valid entries.</summary>
internal sealed class DenseKvCache : IDisposable
{
    public DeviceBuffer Keys { get; }
    public DeviceBuffer Values { get; }
    public int Layers { get; }
    public int Capacity { get; }
    public int KvDim { get; }
    public int Length { get; internal set; }

    public DenseKvCache(IComputeBackend backend, int layers, int capacity, int kvDim)
    {
        Layers = layers; Capacity = capacity; KvDim = kvDim;
        long total = (long)layers * capacity * kvDim;
        if (total > int.MaxValue) throw new ArgumentOutOfRangeException(nameof(capacity),
            $"a dense cache of {total} floats per tensor is too large; use a shorter context");
        Keys = backend.Allocate((int)total);
        Values = backend.Allocate((int)total);
    }

    public long ByteSize => 2L * Layers * Capacity * KvDim * sizeof(float);
    public int LayerOffset(int layer) => layer * Capacity * KvDim;

    public void Dispose() { Keys.Dispose(); Values.Dispose(); }
}
