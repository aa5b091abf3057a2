package control_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/splice-dev/splice/host/control"
)

func TestTruncate(t *testing.T) {
	tests := []struct {
		name string
		s    string
		n    int
		want string
	}{
		{name: "shorter", s: "abc", n: 5, want: "abc"},
		{name: "exactly n", s: "abcde", n: 5, want: "abcde"},
		{name: "cut with the ellipsis inside n", s: "abcdefgh", n: 6, want: "abc..."},
		{name: "room for the ellipsis only", s: "abcdef", n: 3, want: "..."},
		{name: "n below the ellipsis keeps what fits, unmarked", s: "abcdef", n: 2, want: "ab"},
		{name: "zero", s: "abc", n: 0, want: ""},
		{name: "negative", s: "abc", n: -1, want: ""},
		{name: "empty", s: "", n: 0, want: ""},
		// é is 2 bytes: a cut after 5 bytes would split the third one.
		{name: "two-byte runes", s: "ééééé", n: 8, want: "éé..."},
		// 😀 is 4 bytes: nothing of it fits in 3.
		{name: "four-byte runes", s: "😀😀", n: 6, want: "..."},
		{name: "multi-byte rune below the ellipsis", s: "é", n: 1, want: ""},
		{name: "cut right after a three-byte rune", s: "aé€bcdef", n: 9, want: "aé€..."},
		{name: "three-byte rune dropped whole", s: "aé€bcdef", n: 8, want: "aé..."},
		// Not UTF-8: a long run of continuation bytes is backed off through by at most the 3
		// bytes a character may continue for.
		{name: "invalid run", s: "a" + strings.Repeat("\x80", 9), n: 9, want: "a\x80\x80..."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := control.Truncate(tt.s, tt.n)
			if got != tt.want {
				t.Fatalf("Truncate(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.want)
			}
			checkBound(t, tt.s, tt.n, got)
		})
	}
}

func TestTruncateMiddle(t *testing.T) {
	const alnum = "0123456789abcdefghij" // 20 bytes
	mark := control.ElisionMark
	tests := []struct {
		name    string
		s       string
		n, head int
		want    string
	}{
		{name: "shorter", s: "abc", n: 10, head: 3, want: "abc"},
		{name: "exactly n", s: alnum, n: 20, head: 3, want: alnum},
		{name: "head and tail", s: alnum, n: 15, head: 3, want: "012" + mark + "fghij"},
		{name: "head a third, as the builder keeps it", s: alnum, n: 16, head: (16 - len(mark)) / 3, want: "012" + mark + "efghij"},
		{name: "head larger than the room", s: alnum, n: 15, head: 100, want: "01234567" + mark},
		{name: "negative head keeps the end only", s: alnum, n: 15, head: -1, want: mark + "cdefghij"},
		{name: "no room for the mark is Truncate", s: alnum, n: 7, head: 3, want: "0123..."},
		// ü and ö are 2 bytes: neither cut may split one.
		{name: "multi-byte runes at both cuts", s: "üüüüü-ööööö", n: 7 + 5 + 5, head: 5, want: "üü" + mark + "öö"},
		{name: "four-byte runes at both cuts", s: "😀😀😀-😀😀😀", n: 7 + 6 + 6, head: 6, want: "😀" + mark + "😀"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := control.TruncateMiddle(tt.s, tt.n, tt.head)
			if got != tt.want {
				t.Fatalf("TruncateMiddle(%q, %d, %d) = %q, want %q", tt.s, tt.n, tt.head, got, tt.want)
			}
			checkBound(t, tt.s, tt.n, got)
		})
	}
}

// FuzzTruncate: whatever the input, both helpers stay within n bytes, keep valid UTF-8 valid,
// and keep the start (and, for TruncateMiddle, the end) of s as it was.
func FuzzTruncate(f *testing.F) {
	f.Add("ééééé", 8, 3)
	f.Add("😀😀😀-😀😀😀", 19, 6)
	f.Add("a\x80\x80\x80\x80b", 4, 1)
	f.Add(strings.Repeat("x", 100), 10, 50)
	f.Fuzz(func(t *testing.T, s string, n, head int) {
		got := control.Truncate(s, n)
		checkBound(t, s, n, got)
		if !strings.HasPrefix(s, strings.TrimSuffix(got, control.Ellipsis)) {
			t.Fatalf("Truncate(%q, %d) = %q is not a start of s", s, n, got)
		}
		got = control.TruncateMiddle(s, n, head)
		checkBound(t, s, n, got)
		if len(s) > n && n > len(control.ElisionMark) && !keepsEnds(s, got) {
			t.Fatalf("TruncateMiddle(%q, %d, %d) = %q is not a start and an end of s around the mark", s, n, head, got)
		}
	})
}

// keepsEnds reports whether got is a start of s, ElisionMark, and an end of s (s itself may hold
// the mark, so every place of it in got is tried).
func keepsEnds(s, got string) bool {
	for i := 0; i+len(control.ElisionMark) <= len(got); i++ {
		if strings.HasPrefix(got[i:], control.ElisionMark) && strings.HasPrefix(s, got[:i]) &&
			strings.HasSuffix(s, got[i+len(control.ElisionMark):]) {
			return true
		}
	}
	return false
}

func checkBound(t *testing.T, s string, n int, got string) {
	t.Helper()
	if len(got) > max(n, 0) {
		t.Fatalf("%q is %d bytes, more than n = %d", got, len(got), n)
	}
	if len(s) <= n && got != s {
		t.Fatalf("%q fits in %d bytes but became %q", s, n, got)
	}
	if utf8.ValidString(s) && !utf8.ValidString(got) {
		t.Fatalf("%q was cut inside a character: %q", s, got)
	}
}
