using System.Runtime.InteropServices;

namespace KvIlgpu.Models.Loading;

/// <summary>Reads tensors out of a binary file with bounds checks that name the file and tensor,
/// and reports progress as bytes are read.</summary>
internal sealed class TensorFileReader : IDisposable
{
    private readonly FileStream _stream;
    private readonly IProgress<LoadProgress>? _progress;
    private readonly string _stage;
    private long _done;

    public string Path { get; }
    public long Length { get; }
    public long ProgressTotal { get; set; }
    public long ProgressBase { get; set; }

    /// <summary>Opens path. buffered: a 1 MB read buffer for headers of many small fields; a reader that only reads
    /// tensors (large reads straight into their arrays) takes none, so reading one tensor per reader leaves no
    /// megabyte of garbage behind each time (that garbage was a fifth of a loaded model's heap).</summary>
    public TensorFileReader(string path, IProgress<LoadProgress>? progress, string stage = "loading weights", bool buffered = true)
    {
        Path = path;
        if (!File.Exists(path)) throw new FileNotFoundException($"model file not found: {path}", path);
        _stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, buffered ? 1 << 20 : 0);
        Length = _stream.Length;
        ProgressTotal = Length;
        _progress = progress;
        _stage = stage;
    }

    public long Position { get => _stream.Position; set => _stream.Position = value; }

    private void Need(long bytes, string what)
    {
        long remaining = Length - _stream.Position;
        if (bytes > remaining)
            throw new InvalidModelException(Path,
                $"truncated: {what} needs {bytes} bytes at offset {_stream.Position}, but the file has only {Math.Max(0, remaining)} left");
    }

    public void ReadExactly(Span<byte> dst, string what)
    {
        Need(dst.Length, what);
        _stream.ReadExactly(dst);
    }

    public int ReadInt32(string what) { Span<byte> b = stackalloc byte[4]; ReadExactly(b, what); return BitConverter.ToInt32(b); }
    public uint ReadUInt32(string what) { Span<byte> b = stackalloc byte[4]; ReadExactly(b, what); return BitConverter.ToUInt32(b); }
    public long ReadInt64(string what) { Span<byte> b = stackalloc byte[8]; ReadExactly(b, what); return BitConverter.ToInt64(b); }
    public ulong ReadUInt64(string what) { Span<byte> b = stackalloc byte[8]; ReadExactly(b, what); return BitConverter.ToUInt64(b); }
    public float ReadSingle(string what) { Span<byte> b = stackalloc byte[4]; ReadExactly(b, what); return BitConverter.ToSingle(b); }

    public byte[] ReadBytes(long count, string what)
    {
        if (count < 0 || count > int.MaxValue) throw new InvalidModelException(Path, $"{what}: implausible length {count}");
        Need(count, what);
        var bytes = new byte[count];
        _stream.ReadExactly(bytes);
        return bytes;
    }

    /// <summary>Reads a typed array in chunks so progress can be shown for large tensors.</summary>
    public T[] ReadArray<T>(long count, string tensor) where T : unmanaged
    {
        long bytes = count * Marshal.SizeOf<T>();
        Need(bytes, $"tensor {tensor}");
        var data = new T[count];
        var span = MemoryMarshal.AsBytes(data.AsSpan());
        const int Chunk = 8 << 20;
        for (int off = 0; off < span.Length; off += Chunk)
        {
            int n = Math.Min(Chunk, span.Length - off);
            _stream.ReadExactly(span.Slice(off, n));
            _done += n;
            _progress?.Report(new LoadProgress(_stage, ProgressBase + _done, ProgressTotal));
        }
        return data;
    }

    public void Skip(long bytes, string what)
    {
        Need(bytes, what);
        _stream.Seek(bytes, SeekOrigin.Current);
    }

    public void Dispose() => _stream.Dispose();
}
