namespace KvIlgpu.Compute;

/// <summary>The device buffers of a paged KV cache (SPEC 1): the block pool of packed 32-bit words (each block a head's
/// keys, then its values, as <see cref="Kernels.KvCodec"/> packs them), per-slot original position and eviction metric,
/// per-slot q8 scales (key at 2 * slot, value at 2 * slot + 1; one unused float for other storage types), the heads'
/// shapes followed by their block tables, and the heads' lengths. See PagedLayout for the indexing.</summary>
internal sealed record PagedKvBuffers(
    Kernels.PagedLayout Layout, DeviceIntBuffer Blocks, DeviceIntBuffer Positions, DeviceBuffer Metric,
    DeviceIntBuffer Tables, DeviceIntBuffer Lengths, DeviceBuffer Scales) : IDisposable
{
    public void Dispose()
    {
        Blocks.Dispose(); Positions.Dispose(); Metric.Dispose(); Tables.Dispose(); Lengths.Dispose(); Scales.Dispose();
    }
}
