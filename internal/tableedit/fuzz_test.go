package tableedit

import (
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/maps"
)

// FuzzEntries: whatever a table file holds, Entries does not panic, its
// entries are in order, do not overlap, and each one's Text is its lines;
// removing an entry from a file that parses leaves the other lines as they
// were.
func FuzzEntries(f *testing.F) {
	f.Add(0, virtText)
	f.Add(1, "staff: pp,\n  bob\n# c \\\nroot: pp\\\n\n")
	f.Add(2, "example.org # x\n\n  a.example b.example\n#\n")
	f.Add(3, "Connect:10 RELAY\r\nFrom:a@b ERROR:550 x\n")
	f.Fuzz(func(t *testing.T, which int, text string) {
		name := maps.Files[uint(which)%uint(len(maps.Files))]
		file := &File{Name: name, Lines: splitLines([]byte(text))}
		next := 1
		for _, e := range file.Entries() {
			if e.Line < next || e.N < 1 || e.Line-1+e.N > len(file.Lines) {
				t.Fatalf("entry %+v out of place (next line %d, %d lines)", e, next, len(file.Lines))
			}
			if e.Text != strings.Join(file.Lines[e.Line-1:e.Line-1+e.N], "\n") {
				t.Fatalf("entry %+v: text is not its lines", e)
			}
			if got, err := file.Find(e.Line, e.Text); err != nil || got.Line != e.Line {
				t.Fatalf("Find(%d): %v", e.Line, err)
			}
			next = e.Line + e.N
		}
		if Validate(name, []byte(text)) != nil {
			return
		}
		for _, e := range file.Entries() {
			cp := &File{Name: name, Lines: append([]string(nil), file.Lines...)}
			cp.Remove(e)
			want := append(append([]string(nil), file.Lines[:e.Line-1]...), file.Lines[e.Line-1+e.N:]...)
			if strings.Join(cp.Lines, "\n") != strings.Join(want, "\n") {
				t.Fatalf("removing %+v changed other lines", e)
			}
		}
	})
}
