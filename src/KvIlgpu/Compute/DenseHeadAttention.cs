using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace KvIlgpu.Compute;

/// <summary>One query head's attention over a dense run of cached rows (the managed backend's dense-cache path, which
/// prefill takes): scores four keys at a time, a softmax, then the value sum with the output held in registers, 64
/// features a pass. The straightforward form (a dot-product call per key, a multiply-add call per value row) spent most
/// of a 512-token prefill's attention time in call overhead at head widths of 64. Heads whose width is not a whole
/// number of 8s, and machines without Vector256, keep that form.</summary>
internal static class DenseHeadAttention
{
    /// <summary>Whether heads of width d take the blocked path.</summary>
    public static bool Blocked(int d) => Vector256.IsHardwareAccelerated && Fma.IsSupported && d % 8 == 0;

    /// <summary>dst = softmax(scale q . k_t) . v over t in [0, len): key t at keys[t * stride], value t at
    /// values[t * stride]; scores is scratch of at least len.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Attend(ReadOnlySpan<float> q, ReadOnlySpan<float> keys, ReadOnlySpan<float> values, int stride, int len,
        float scale, Span<float> scores, Span<float> dst)
    {
        int d = q.Length;
        if (!Blocked(d))
        {
            for (int t = 0; t < len; t++) scores[t] = SimdMath.Dot(q, keys.Slice(t * stride, d)) * scale;
            SimdMath.SoftMax(scores[..len], scores[..len]);
            dst.Clear();
            for (int t = 0; t < len; t++)
                System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(values.Slice(t * stride, d), scores[t], dst, dst);
            return;
        }
        Scores(q, keys, stride, len, scale, scores);
        SimdMath.SoftMax(scores[..len], scores[..len]);
        ValueSum(scores, values, stride, len, dst);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Fmadd(Vector256<float> a, Vector256<float> b, Vector256<float> acc) => Fma.MultiplyAdd(a, b, acc);

    /// <summary>scores[t] = scale q . k_t, four keys a pass (four independent accumulators, each query chunk loaded once
    /// for the four).</summary>
    private static void Scores(ReadOnlySpan<float> q, ReadOnlySpan<float> keys, int stride, int len, float scale, Span<float> scores)
    {
        int d = q.Length, t = 0;
        ref float qr = ref MemoryMarshal.GetReference(q);
        ref float kr = ref MemoryMarshal.GetReference(keys);
        for (; t + 3 < len; t += 4)
        {
            nuint k0 = (nuint)(t * stride), k1 = k0 + (nuint)stride, k2 = k1 + (nuint)stride, k3 = k2 + (nuint)stride;
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (nuint c = 0; c < (nuint)d; c += 8)
            {
                var x = Vector256.LoadUnsafe(ref qr, c);
                a0 = Fmadd(x, Vector256.LoadUnsafe(ref kr, k0 + c), a0);
                a1 = Fmadd(x, Vector256.LoadUnsafe(ref kr, k1 + c), a1);
                a2 = Fmadd(x, Vector256.LoadUnsafe(ref kr, k2 + c), a2);
                a3 = Fmadd(x, Vector256.LoadUnsafe(ref kr, k3 + c), a3);
            }
            scores[t] = Vector256.Sum(a0) * scale;
            scores[t + 1] = Vector256.Sum(a1) * scale;
            scores[t + 2] = Vector256.Sum(a2) * scale;
            scores[t + 3] = Vector256.Sum(a3) * scale;
        }
        for (; t < len; t++)
        {
            nuint k0 = (nuint)(t * stride);
            Vector256<float> a0 = default;
            for (nuint c = 0; c < (nuint)d; c += 8)
                a0 = Fmadd(Vector256.LoadUnsafe(ref qr, c), Vector256.LoadUnsafe(ref kr, k0 + c), a0);
            scores[t] = Vector256.Sum(a0) * scale;
        }
    }

    /// <summary>dst = sum_t p[t] v_t: 64 output features a pass over the rows in eight accumulators (then 8 a pass for the
    /// rest of the width).</summary>
    private static void ValueSum(ReadOnlySpan<float> p, ReadOnlySpan<float> values, int stride, int len, Span<float> dst)
    {
        int d = dst.Length, c = 0;
        ref float vr = ref MemoryMarshal.GetReference(values);
        ref float pr = ref MemoryMarshal.GetReference(p);
        ref float dr = ref MemoryMarshal.GetReference(dst);
        for (; c + 63 < d; c += 64)
        {
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
            nuint at = (nuint)c;
            for (int t = 0; t < len; t++, at += (nuint)stride)
            {
                var w = Vector256.Create(Unsafe.Add(ref pr, t));
                a0 = Fmadd(w, Vector256.LoadUnsafe(ref vr, at), a0);
                a1 = Fmadd(w, Vector256.LoadUnsafe(ref vr, at + 8), a1);
                a2 = Fmadd(w, Vector256.LoadUnsafe(ref vr, at + 16), a2);
                a3 = Fmadd(w, Vector256.LoadUnsafe(ref vr, at + 24), a3);
                a4 = Fmadd(w, Vector256.LoadUnsafe(ref vr, at + 32), a4);
                a5 = Fmadd(w, Vector256.LoadUnsafe(ref vr, at + 40), a5);
                a6 = Fmadd(w, Vector256.LoadUnsafe(ref vr, at + 48), a6);
                a7 = Fmadd(w, Vector256.LoadUnsafe(ref vr, at + 56), a7);
            }
            nuint o = (nuint)c;
            a0.StoreUnsafe(ref dr, o); a1.StoreUnsafe(ref dr, o + 8); a2.StoreUnsafe(ref dr, o + 16); a3.StoreUnsafe(ref dr, o + 24);
            a4.StoreUnsafe(ref dr, o + 32); a5.StoreUnsafe(ref dr, o + 40); a6.StoreUnsafe(ref dr, o + 48); a7.StoreUnsafe(ref dr, o + 56);
        }
        for (; c < d; c += 8)
        {
            Vector256<float> a0 = default;
            nuint at = (nuint)c;
            for (int t = 0; t < len; t++, at += (nuint)stride)
                a0 = Fmadd(Vector256.Create(Unsafe.Add(ref pr, t)), Vector256.LoadUnsafe(ref vr, at), a0);
            a0.StoreUnsafe(ref dr, (nuint)c);
        }
    }
}
