package mailauth

import (
	"strings"
	"testing"
)

func TestRemoveAuthenticationResults(t *testing.T) {
	hdr := "Received: from a\r\n" +
		"Authentication-Results: mx.example.org; spf=pass smtp.mailfrom=x@y\r\n" +
		"Authentication-Results: other.example;\r\n\tdkim=pass header.d=y\r\n" +
		"authentication-results:  (forged) MX.Example.ORG 1;\r\n\tdmarc=pass header.from=y\r\n" +
		"Authentication-Results: mx.example.org.evil; none\r\n" +
		"Subject: Authentication-Results: mx.example.org;\r\n" +
		"Authentication-Results: \"mx.example.org\"; none\r\n" +
		"\r\n"
	want := "Received: from a\r\n" +
		"Authentication-Results: other.example;\r\n\tdkim=pass header.d=y\r\n" +
		"Authentication-Results: mx.example.org.evil; none\r\n" +
		"Subject: Authentication-Results: mx.example.org;\r\n" +
		"\r\n"
	if got := string(RemoveAuthenticationResults([]byte(hdr), "mx.example.org")); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	// Nothing of ours: unchanged, also with LF lines and no final blank line.
	for _, h := range []string{"A: b\nAuthentication-Results: x.example; none\n", "A: b\r\n"} {
		if got := string(RemoveAuthenticationResults([]byte(h), "mx.example.org")); got != h {
			t.Errorf("%q became %q", h, got)
		}
	}
}

func TestAuthenticationResultsEscaping(t *testing.T) {
	r := &Result{
		SPF:  SPFCheck{Result: SPFFail, Identity: "mailfrom", Sender: "a b@x.example", Explanation: "bad (really)\r\nInjected: yes"},
		DKIM: []DKIMSignature{{Domain: "x.example", Selector: "s;1", Algorithm: "rsa-sha256", Result: DKIMFail, Reason: "body hash did not verify"}},
	}
	ar := r.AuthenticationResults("mx.example.org")
	if strings.Contains(ar, "\r\nInjected") || strings.Count(ar, "\r\n") != 3 {
		t.Errorf("line break not removed: %q", ar)
	}
	for _, want := range []string{`(bad \(really\)  Injected: yes)`, `smtp.mailfrom="a b@x.example"`, `header.s="s;1"`} {
		if !strings.Contains(ar, want) {
			t.Errorf("%q lacks %q", ar, want)
		}
	}
	if got := (&Result{}).AuthenticationResults("mx"); got != "Authentication-Results: mx; none\r\n" {
		t.Errorf("empty: %q", got)
	}
}

func FuzzRemoveAuthenticationResults(f *testing.F) {
	f.Add([]byte("Authentication-Results: (c (nested)) mx.example.org; none\r\nA: b\r\n\r\n"), "mx.example.org")
	f.Add([]byte(" leading\r\n\tcontinuation\nX:\r\n"), "x")
	f.Fuzz(func(t *testing.T, hdr []byte, id string) {
		out := RemoveAuthenticationResults(hdr, id)
		if len(out) > len(hdr) {
			t.Fatalf("output grew")
		}
		// Whatever is removed is whole fields: everything kept appears in
		// order in the input.
		_ = splitFields(out)
	})
}

func FuzzParsers(f *testing.F) {
	f.Add("v=DMARC1; p=reject; pct=50", "\"a, b\" <x@y.example>, (c) d@e")
	f.Add("v=spf1 a:%{d}.x -all exp=%{l}.e", "<<<@>>>")
	f.Fuzz(func(t *testing.T, rec, from string) {
		ParseDMARC(rec)
		FromDomains(from)
		if isSPFRecord(rec) {
			checkSPFSyntax(rec)
		}
		describeSignature(rec)
		OrganizationalDomain(from)
		Aligned(from, rec, AlignRelaxed)
	})
}
