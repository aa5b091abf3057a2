package control

import "unicode/utf8"

// Messages that reach a bounded place — a condition or a report annotation, an error that quotes
// untrusted input, a container's termination message — are shortened here and nowhere else. The
// helpers live in this package because it has only standard-library dependencies and every side
// links it: the host library, the agent, the builder and (through the API package) the
// controller. They cut on UTF-8 boundaries: a message cut inside a character is no longer valid
// UTF-8, and encoding/json replaces the broken bytes with U+FFFD, so the message would end
// in garbage and could even outgrow its bound.

const (
	// Ellipsis marks where Truncate cut the end of a message.
	Ellipsis = "..."
	// ElisionMark marks where TruncateMiddle cut the middle of a message out.
	ElisionMark = "\n[...]\n"
)

// Truncate bounds s to n bytes. A longer s keeps its longest start that fits with Ellipsis
// after it; when n is too small even for Ellipsis, as much of the start as fits, unmarked. It
// never splits a UTF-8 sequence, so the result is valid UTF-8 whenever s is. n <= 0 gives "".
func Truncate(s string, n int) string {
	switch {
	case len(s) <= n:
		return s
	case n < len(Ellipsis):
		return prefix(s, n)
	}
	return prefix(s, n-len(Ellipsis)) + Ellipsis
}

// TruncateMiddle bounds s to n bytes by cutting out its middle, for output whose start says what
// failed and whose end holds the last lines a tool printed. A longer s keeps at most head bytes
// of its start and fills the rest of n after ElisionMark with its end. When n leaves no room
// for the mark, it is Truncate. Like Truncate, it never splits a UTF-8 sequence.
func TruncateMiddle(s string, n, head int) string {
	switch {
	case len(s) <= n:
		return s
	case n <= len(ElisionMark):
		return Truncate(s, n)
	}
	room := n - len(ElisionMark)
	head = min(max(head, 0), room)
	return prefix(s, head) + ElisionMark + suffix(s, room-head)
}

// prefix is the longest start of s of at most n bytes that ends on a character boundary.
func prefix(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if n >= len(s) {
		return s
	}
	// A character has at most UTFMax-1 continuation bytes; past that s is not UTF-8 there, and
	// backing off further would only lose more of it.
	for i := 0; i < utf8.UTFMax-1 && n > 0 && !utf8.RuneStart(s[n]); i++ {
		n--
	}
	return s[:n]
}

// suffix is the longest end of s of at most n bytes that starts on a character boundary.
func suffix(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if n >= len(s) {
		return s
	}
	i := len(s) - n
	for j := 0; j < utf8.UTFMax-1 && i < len(s) && !utf8.RuneStart(s[i]); j++ {
		i++
	}
	return s[i:]
}
