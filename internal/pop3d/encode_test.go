package pop3d

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

func encode(t testing.TB, msg string, bodyLines, readerSize int) string {
	t.Helper()
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	if err := writeMessage(w, bufio.NewReaderSize(strings.NewReader(msg), readerSize), bodyLines); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	return out.String()
}

func TestWriteMessage(t *testing.T) {
	for _, tc := range []struct {
		name      string
		msg       string
		bodyLines int
		want      string
	}{
		{"plain", "A: b\r\n\r\nbody\r\n", -1, "A: b\r\n\r\nbody\r\n.\r\n"},
		{"empty message", "", -1, ".\r\n"},
		{"dots stuffed", "A: b\r\n\r\n.\r\n..\r\n.x\r\nx.\r\n", -1, "A: b\r\n\r\n..\r\n...\r\n..x\r\nx.\r\n.\r\n"},
		{"dot on the first line", ".A: b\r\n", -1, "..A: b\r\n.\r\n"},
		{"no line end at the end", "A: b\r\n\r\nend", -1, "A: b\r\n\r\nend\r\n.\r\n"},
		{"lone CR at the end", "A: b\r\n\r\nend\r", -1, "A: b\r\n\r\nend\r\n.\r\n"},
		{"bare LF becomes CRLF", "A: b\n\nx\n.\n", -1, "A: b\r\n\r\nx\r\n..\r\n.\r\n"},
		{"bare CR kept", "A: b\r\n\r\nx\ry\r\n", -1, "A: b\r\n\r\nx\ry\r\n.\r\n"},
		{"TOP 0", "A: b\r\nC: d\r\n\r\n1\r\n2\r\n", 0, "A: b\r\nC: d\r\n\r\n.\r\n"},
		{"TOP 1", "A: b\r\n\r\n1\r\n2\r\n", 1, "A: b\r\n\r\n1\r\n.\r\n"},
		{"TOP with stuffing", "A: b\r\n\r\n.1\r\n.2\r\n", 1, "A: b\r\n\r\n..1\r\n.\r\n"},
		{"TOP more than there is", "A: b\r\n\r\n1\r\n", 5, "A: b\r\n\r\n1\r\n.\r\n"},
		{"TOP, header only", "A: b\r\nC: d\r\n", 0, "A: b\r\nC: d\r\n.\r\n"},
		{"TOP, empty body lines count", "A: b\r\n\r\n\r\n\r\nx\r\n", 2, "A: b\r\n\r\n\r\n\r\n.\r\n"},
		{"TOP, header with bare LF", "A: b\n\n1\n2\n", 1, "A: b\r\n\r\n1\r\n.\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The reader's buffer size changes where lines are cut into
			// pieces: the output must not depend on it.
			for _, size := range []int{16, 17, 18, 4096} {
				if got := encode(t, tc.msg, tc.bodyLines, size); got != tc.want {
					t.Errorf("buffer %d: got %q, want %q", size, got, tc.want)
				}
			}
		})
	}
}

// Lines longer than the reader's buffer: a dot is stuffed only at the start
// of a line, never at the start of a later piece of it, and a CR at the end
// of a piece followed by the LF of the next is one line end.
func TestWriteMessageLongLines(t *testing.T) {
	long := strings.Repeat("x", 15) + "\r" // the CR ends a 16-octet piece
	msg := "A: b\r\n\r\n" + long + "\n." + strings.Repeat(".", 40) + "\r\n"
	want := "A: b\r\n\r\n" + long + "\n.." + strings.Repeat(".", 40) + "\r\n.\r\n"
	if got := encode(t, msg, -1, 16); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	// A piece that starts with "." in the middle of a line.
	msg = "A: b\r\n\r\n" + strings.Repeat("y", 16) + ".z\r\n"
	want = "A: b\r\n\r\n" + strings.Repeat("y", 16) + ".z\r\n.\r\n"
	if got := encode(t, msg, -1, 16); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
