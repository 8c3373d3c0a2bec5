namespace KvIlgpu.Compute;

/// <summary>The names of the devices, as the command line and config files write them.</summary>
public static class DeviceKinds
{
    /// <summary>Parses a device name: auto, cpu, cuda (or gpu) or ilgpu-cpu, in any case; anything else is an
    /// <see cref="InvalidOptionException"/> naming Device.</summary>
    public static DeviceKind Parse(string value) => value.ToLowerInvariant() switch
    {
        "auto" => DeviceKind.Auto,
        "cpu" => DeviceKind.Cpu,
        "cuda" or "gpu" => DeviceKind.Cuda,
        "ilgpu-cpu" => DeviceKind.IlgpuCpu,
        _ => throw new InvalidOptionException("Device", $"Device: unknown device '{value}' (expected auto, cpu, cuda or ilgpu-cpu)"),
    };
}
