namespace KvIlgpu.Cache;

/// <summary>Allocation of fixed-size physical blocks: a free list plus an owner per block. It decides nothing about
/// what to keep or evict; it only hands out and takes back block ids.</summary>
internal sealed class BlockPool
{
    private readonly Stack<int> _free;
    private readonly int[] _owner; // -1: free, else the owning head's index

    public int Total { get; }
    public int Free => _free.Count;
    public int Used => Total - _free.Count;

    public BlockPool(int blocks)
    {
        if (blocks <= 0) throw new ArgumentOutOfRangeException(nameof(blocks), "the pool needs at least one block");
        Total = blocks;
        _owner = Enumerable.Repeat(-1, blocks).ToArray();
        // Lowest ids first, so a fresh pool hands out 0, 1, 2, ...
        _free = new Stack<int>(Enumerable.Range(0, blocks).Reverse());
    }

    /// <summary>Takes count blocks for owner, all or none.</summary>
    public bool TryAllocate(int count, int owner, Span<int> blocks)
    {
        if (count > _free.Count) return false;
        for (int i = 0; i < count; i++)
        {
            int b = _free.Pop();
            _owner[b] = owner;
            blocks[i] = b;
        }
        return true;
    }

    public void Release(int block, int owner)
    {
        if ((uint)block >= (uint)Total) throw new ArgumentOutOfRangeException(nameof(block));
        if (_owner[block] != owner) throw new InvalidOperationException($"block {block} is owned by {_owner[block]}, not {owner}");
        _owner[block] = -1;
        _free.Push(block);
    }

    public int OwnerOf(int block) => _owner[block];

    /// <summary>Checks the pool's own invariants: every free-list entry is free and listed once, used + free = total.</summary>
    public void CheckInvariants()
    {
        var seen = new HashSet<int>();
        foreach (var b in _free)
        {
            if (!seen.Add(b)) throw new InvalidOperationException($"block {b} is on the free list twice");
            if (_owner[b] != -1) throw new InvalidOperationException($"block {b} is on the free list but owned by {_owner[b]}");
        }
        int owned = _owner.Count(o => o != -1);
        if (owned + _free.Count != Total) throw new InvalidOperationException($"{owned} owned + {_free.Count} free != {Total} blocks");
    }
}
