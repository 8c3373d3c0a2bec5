namespace KvIlgpu.Projection;

/// <summary>Which half of a KV pair a projection matrix applies to.</summary>
public enum KvPart
{
    /// <summary>Keys (projected after RoPE, queries with them).</summary>
    Key,
    /// <summary>Values (un-projected after attention).</summary>
    Value,
}
