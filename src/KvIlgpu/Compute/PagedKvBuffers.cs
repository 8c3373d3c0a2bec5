namespace KvIlgpu.Compute;

/// <summary>The device buffers of a paged KV cache (SPEC 1): K and V pools of packed 32-bit words (KeyWords and ValueWords
/// per slot, as <see cref="Kernels.KvCodec"/> packs them), per-slot original position and eviction metric, per-slot q8
/// scales (key at 2 * slot, value at 2 * slot + 1; one unused float for other storage types), per-head block tables and
/// lengths. See PagedLayout for the indexing.</summary>
internal sealed record PagedKvBuffers(
    Kernels.PagedLayout Layout, DeviceIntBuffer Keys, DeviceIntBuffer Values, DeviceIntBuffer Positions, DeviceBuffer Metric,
    DeviceIntBuffer Tables, DeviceIntBuffer Lengths, DeviceBuffer Scales) : IDisposable
{
    public void Dispose()
    {
        Keys.Dispose(); Values.Dispose(); Positions.Dispose(); Metric.Dispose(); Tables.Dispose(); Lengths.Dispose(); Scales.Dispose();
    }
}
