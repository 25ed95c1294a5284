package smtpd_test

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// conformanceDir returns $POSTHORN_CONFORMANCE_DIR, skipping the test when it
// is unset (and failing it when POSTHORN_REQUIRE_INTEROP=1, as in CI).
func conformanceDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("POSTHORN_CONFORMANCE_DIR")
	if dir == "" {
		if os.Getenv("POSTHORN_REQUIRE_INTEROP") == "1" {
			t.Fatal("POSTHORN_CONFORMANCE_DIR is not set and POSTHORN_REQUIRE_INTEROP=1")
		}
		t.Skip("POSTHORN_CONFORMANCE_DIR is not set (point it at shared/conformance); skipping")
	}
	return dir
}

// traceStep is a client line (or the data of a DATA command) and the reply it
// should get.
type traceStep struct {
	send  string // what the client sends, CRLF included
	reply string // the expected reply code
}

// parseTrace splits an RFC 5321 Appendix D trace into the greeting code and the
// client's steps: a server line starts with three digits and a space or '-';
// after a 354 the client's lines up to "." are message data.
func parseTrace(t *testing.T, path string) (string, []traceStep) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	isReply := func(l string) bool {
		return len(l) >= 4 && l[0] >= '2' && l[0] <= '5' && l[1] >= '0' && l[1] <= '9' && l[2] >= '0' && l[2] <= '9' && (l[3] == ' ' || l[3] == '-')
	}
	var greeting string
	var steps []traceStep
	var data *strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSuffix(sc.Text(), "\r")
		switch {
		case data != nil:
			data.WriteString(line + "\r\n")
			if line == "." {
				steps = append(steps, traceStep{send: data.String()})
				data = nil
			}
		case isReply(line):
			if line[3] == '-' {
				continue
			}
			if greeting == "" && len(steps) == 0 {
				greeting = line[:3]
				continue
			}
			steps[len(steps)-1].reply = line[:3]
			if line[:3] == "354" {
				data = &strings.Builder{}
			}
		default:
			steps = append(steps, traceStep{send: line + "\r\n"})
		}
	}
	return greeting, steps
}

// TestRFC5321AppendixD replays the example sessions of RFC 5321 appendix D
// and compares the class of every reply (VRFY may be answered 252 where the
// example shows 250: RFC 5321 section 3.5.3 allows it).
func TestRFC5321AppendixD(t *testing.T) {
	dir := filepath.Join(conformanceDir(t), "smtp-traces")
	traces, err := filepath.Glob(filepath.Join(dir, "*.trace"))
	if err != nil || len(traces) == 0 {
		t.Fatalf("no traces in %s", dir)
	}
	h := newHarness(t, harnessOpts{
		tables:   map[string]string{"local-host-names": "foo.com\nxyz.com\n"},
		accounts: []string{"jones", "brown", "admin.mrc"},
	})
	for _, path := range traces {
		t.Run(filepath.Base(path), func(t *testing.T) {
			greeting, steps := parseTrace(t, path)
			c := h.dial("127.0.0.2")
			if r := c.read(); string(rune('0'+r.code/100)) != greeting[:1] {
				t.Fatalf("greeting %v, want %sxx", r, greeting[:1])
			}
			for _, st := range steps {
				c.send(st.send)
				r := c.read()
				if st.reply == "" {
					t.Fatalf("trace has no reply after %q", st.send)
				}
				if r.code/100 != int(st.reply[0]-'0') {
					t.Errorf("%q: got %v, want %sxx", strings.TrimSpace(firstLine(st.send)), r, st.reply[:1])
				}
				if r.enhanced() == "" && r.code != 220 && r.code != 354 && r.code != 250 {
					t.Errorf("%q: reply %v has no enhanced status code", firstLine(st.send), r)
				}
			}
		})
	}
	// The messages of D.1, D.3 and D.4 arrived.
	if n := len(h.messages("jones")); n != 3 {
		t.Errorf("jones has %d messages, want 3 (D.1, D.3 step 1, D.3 step 2)", n)
	}
	if n := len(h.messages("admin.mrc")); n != 1 {
		t.Errorf("admin.mrc has %d messages, want 1 (D.4)", n)
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\r\n")
	return l
}
