namespace KvIlgpu.Cache;

/// <summary>What the paged cache holds per token, for sizing a deployment before any engine exists.</summary>
public static class KvStorageSizes
{
    /// <summary>Bytes one cached token of one (layer, KV head) takes: its key and value packed in the storage type (at
    /// keyWidth and valueWidth features: head_dim, or a projection's largest ranks), its position and eviction metric, and
    /// with q8 its two scales.</summary>
    public static int BytesPerToken(KvStorageType type, int keyWidth, int valueWidth)
    {
        if (type == KvStorageType.Auto) throw new ArgumentException("resolve Auto to a storage type first", nameof(type));
        int head = Math.Max(keyWidth, valueWidth);
        return new Kernels.PagedLayout(1, head, 1, 1, 1, 1, type, keyWidth, valueWidth).BytesPerSlot;
    }
}
