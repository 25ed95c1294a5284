package imapwire

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRFC3501Traces reads every client line of the RFC 3501 example
// traces (from imap-codec's test suite) through the parser.
func TestRFC3501Traces(t *testing.T) {
	dir := os.Getenv("POSTHORN_CONFORMANCE_DIR")
	if dir == "" {
		if os.Getenv("POSTHORN_REQUIRE_INTEROP") == "1" {
			t.Fatal("POSTHORN_CONFORMANCE_DIR is unset and POSTHORN_REQUIRE_INTEROP=1")
		}
		t.Skip("POSTHORN_CONFORMANCE_DIR unset: set it to ../shared/conformance to replay the RFC 3501 traces")
	}
	f, err := os.Open(filepath.Join(dir, "imap-traces", "imap-codec-rfc3501-traces.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		var tr struct {
			Test, Dir, Line, Kind string
		}
		if err := json.Unmarshal(sc.Bytes(), &tr); err != nil {
			t.Fatal(err)
		}
		if tr.Dir != "C" {
			continue
		}
		n++
		cmd, err := NewReader(bufio.NewReader(strings.NewReader(tr.Line)), Options{}).ReadCommand()
		if err != nil {
			t.Errorf("%s: %q: %v", tr.Test, tr.Line, err)
			continue
		}
		// The command name is the word after the tag (after UID).
		fields := strings.Fields(tr.Line)
		name := strings.ToUpper(fields[1])
		if name == "UID" {
			name = strings.ToUpper(fields[2])
		}
		if cmd.Tag != fields[0] || cmd.Name != name {
			t.Errorf("%s: %q: got tag %q name %q", tr.Test, tr.Line, cmd.Tag, cmd.Name)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n < 50 {
		t.Fatalf("only %d client lines in the trace file", n)
	}
}
