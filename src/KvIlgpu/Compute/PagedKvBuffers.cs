namespace KvIlgpu.Compute;

/// <summary>The device buffers of a paged KV cache (SPEC 1): K and V pools [blocks * BlockSize, HeadDim], per-slot
/// original position and eviction metric, per-head block tables and lengths. See PagedLayout for the indexing.</summary>
internal sealed record PagedKvBuffers(
    Kernels.PagedLayout Layout, DeviceBuffer Keys, DeviceBuffer Values, DeviceIntBuffer Positions, DeviceBuffer Metric,
    DeviceIntBuffer Tables, DeviceIntBuffer Lengths) : IDisposable
{
    public void Dispose()
    {
        Keys.Dispose(); Values.Dispose(); Positions.Dispose(); Metric.Dispose(); Tables.Dispose(); Lengths.Dispose();
    }
}
