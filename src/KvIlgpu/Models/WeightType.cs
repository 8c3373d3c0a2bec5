using System.Runtime.InteropServices;

namespace KvIlgpu.Models;

/// <summary>How a weight's elements are stored (on the host and on the device).</summary>
public enum WeightType { F32, F16, BF16 }
