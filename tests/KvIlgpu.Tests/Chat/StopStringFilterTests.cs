using KvIlgpu.Chat;

namespace KvIlgpu.Tests.Chat;

/// <summary>The stop-string filter against the rule written out a character at a time (generation stops at the first
/// position where some stop string ends; the text is cut before that stop, the longest when several end there), over
/// random texts cut into random pieces, so stops straddle pieces.</summary>
public class StopStringFilterTests
{
    [Fact]
    public void Released_text_is_the_whole_text_cut_before_the_first_stop_whatever_the_pieces()
    {
        var rng = new Random(5);
        for (int trial = 0; trial < 2000; trial++)
        {
            string text = new([.. Enumerable.Range(0, rng.Next(0, 60)).Select(_ => "abc"[rng.Next(3)])]);
            var stops = Enumerable.Range(0, rng.Next(0, 3)).Select(_ => new string([.. Enumerable.Range(0, rng.Next(1, 5))
                .Select(_ => "abc"[rng.Next(3)])])).ToList();
            int cut = text.Length;
            for (int p = 1; p <= text.Length && cut == text.Length; p++)
                foreach (var stop in stops.Where(s => text[..p].EndsWith(s, StringComparison.Ordinal)).OrderByDescending(s => s.Length))
                {
                    cut = p - stop.Length;
                    break;
                }
            var filter = new StopStringFilter(stops);
            var released = new System.Text.StringBuilder();
            for (int at = 0; at < text.Length && !filter.Stopped;)
            {
                int n = Math.Min(text.Length - at, rng.Next(1, 6));
                released.Append(filter.Append(text.Substring(at, n)));
                at += n;
            }
            released.Append(filter.Flush());
            Assert.True(text[..cut] == released.ToString(), $"text {text}, stops {string.Join("/", stops)}: released {released}");
            Assert.Equal(text[..cut], filter.Text);
            Assert.Equal(cut < text.Length, filter.Stopped);
        }
    }

    [Fact]
    public void Text_that_may_begin_a_stop_is_held_back_until_it_cannot()
    {
        var filter = new StopStringFilter(["END"]);
        Assert.Equal("", filter.Append("ab"));   // "ab" could precede... nothing yet: held back two characters
        Assert.Equal("ab", filter.Append("EN")); // "EN" may begin END
        Assert.Equal("ENx", filter.Append("xyz")[..3]);
        Assert.False(filter.Stopped);
    }
}
