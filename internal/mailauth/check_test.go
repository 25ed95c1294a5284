package mailauth

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/authres"
)

// world is a sender domain with SPF, both DKIM keys and a DMARC p=reject
// record, served from memory.
type world struct {
	dns    *memDNS
	signer *Signer
}

func newWorld(t testing.TB) *world {
	t.Helper()
	dir := t.TempDir()
	if err := GenerateKeys(dir, "sender.example", "k1"); err != nil {
		t.Fatal(err)
	}
	s, err := LoadSigner(dir, "sender.example")
	if err != nil {
		t.Fatal(err)
	}
	dns := newMemDNS().
		TXT("sender.example", "v=spf1 ip4:192.0.2.0/24 -all").
		TXT("_dmarc.sender.example", "v=DMARC1; p=reject; rua=mailto:dmarc@sender.example").
		TXT("nodmarc.example", "v=spf1 ip4:192.0.2.1 -all").
		TXT("mx.sender.example", "v=spf1 a -all").
		A("mx.sender.example", "192.0.2.25")
	recs, err := s.Records()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		dns.TXT(r.Name, r.Value)
	}
	return &world{dns: dns, signer: s}
}

const plainMsg = "From: Alice <alice@sender.example>\r\nTo: bob@rcpt.example\r\nSubject: lunch\r\n" +
	"Date: Tue, 2 Jan 2024 10:00:00 +0000\r\nMessage-ID: <x1@sender.example>\r\nMIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n\r\nNoon at the usual place?\r\n"

func (w *world) sign(t testing.TB, msg string) string {
	sig, err := w.signer.Sign(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	return sig + msg
}

func TestCheck(t *testing.T) {
	w := newWorld(t)
	good := netip.MustParseAddr("192.0.2.10")
	evil := netip.MustParseAddr("198.51.100.7")
	forged := strings.Replace(plainMsg, "alice@sender.example", "ceo@sender.example", 1)
	noDMARC := strings.Replace(plainMsg, "alice@sender.example", "x@nodmarc.example", 1)
	for _, tc := range []struct {
		name     string
		checker  Checker
		in       Input
		spf      SPFResult
		dkim     []DKIMResult
		dmarc    DMARCResultValue
		verdict  Verdict
		reasonIn string
	}{
		{"signed from an allowed address", Checker{RejectOnDMARCReject: true},
			Input{good, "mx.sender.example", "alice@sender.example", strings.NewReader(w.sign(t, plainMsg))},
			SPFPass, []DKIMResult{DKIMPass, DKIMPass}, DMARCPass, Accept, ""},
		// Forwarded: SPF fails at the forwarder, the aligned DKIM
		// signature carries DMARC.
		{"signed, relayed by another host", Checker{RejectOnDMARCReject: true},
			Input{evil, "fwd.example", "alice@sender.example", strings.NewReader(w.sign(t, plainMsg))},
			SPFFail, []DKIMResult{DKIMPass, DKIMPass}, DMARCPass, Accept, ""},
		{"forged From under p=reject", Checker{RejectOnDMARCReject: true},
			Input{evil, "evil.example", "bounce@evil.example", strings.NewReader(forged)},
			SPFNone, nil, DMARCFail, Reject, "5.7.1"},
		{"forged From, reject turned off", Checker{},
			Input{evil, "evil.example", "bounce@evil.example", strings.NewReader(forged)},
			SPFNone, nil, DMARCFail, Quarantine, "p=reject"},
		{"body changed after signing", Checker{RejectOnDMARCReject: true},
			Input{evil, "evil.example", "", strings.NewReader(strings.Replace(w.sign(t, plainMsg), "Noon", "Midnight", 1))},
			SPFNone, []DKIMResult{DKIMFail, DKIMFail}, DMARCFail, Reject, "5.7.1"},
		{"SPF -all without DMARC, policy reject", Checker{SPFFailPolicy: Reject},
			Input{evil, "evil.example", "x@nodmarc.example", strings.NewReader(noDMARC)},
			SPFFail, nil, DMARCNone, Reject, "5.7.1 SPF mailfrom check failed: 198.51.100.7 is not allowed to send mail from nodmarc.example"},
		{"SPF -all without DMARC, default accept", Checker{},
			Input{evil, "evil.example", "x@nodmarc.example", strings.NewReader(noDMARC)},
			SPFFail, nil, DMARCNone, Accept, ""},
		{"SPF -all without DMARC, quarantine", Checker{SPFFailPolicy: Quarantine},
			Input{evil, "evil.example", "x@nodmarc.example", strings.NewReader(noDMARC)},
			SPFFail, nil, DMARCNone, Quarantine, "SPF fail"},
		// The null reverse-path: SPF checks the HELO identity, which is
		// aligned with a From in the same organisational domain.
		{"bounce from the sender's MX", Checker{RejectOnDMARCReject: true},
			Input{netip.MustParseAddr("192.0.2.25"), "mx.sender.example", "", strings.NewReader(plainMsg)},
			SPFPass, nil, DMARCPass, Accept, ""},
		{"two From domains never pass", Checker{RejectOnDMARCReject: true},
			Input{good, "mx.sender.example", "alice@sender.example", strings.NewReader(strings.Replace(plainMsg, "From: Alice <alice@sender.example>", "From: alice@sender.example, eve@evil.example", 1))},
			SPFPass, nil, DMARCPermError, Accept, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.checker.Resolver = w.dns
			r := tc.checker.Check(context.Background(), tc.in)
			if r.Err != nil {
				t.Fatal(r.Err)
			}
			got := results(r.DKIM)
			if r.SPF.Result != tc.spf || r.DMARC.Result != tc.dmarc || r.Verdict != tc.verdict ||
				len(got) != len(tc.dkim) || (len(got) > 0 && (got[0] != tc.dkim[0] || got[1] != tc.dkim[1])) {
				t.Errorf("spf=%s dkim=%v dmarc=%s (%s) verdict=%s, want spf=%s dkim=%v dmarc=%s verdict=%s",
					r.SPF.Result, got, r.DMARC.Result, r.DMARC.Reason, r.Verdict, tc.spf, tc.dkim, tc.dmarc, tc.verdict)
			}
			if !strings.Contains(r.Reason, tc.reasonIn) || (tc.reasonIn == "" && r.Reason != "") {
				t.Errorf("reason %q, want it to contain %q", r.Reason, tc.reasonIn)
			}
			if !bytes.HasSuffix(r.Header, []byte("\r\n\r\n")) {
				t.Errorf("header block %q", r.Header)
			}
			// The header parses with go-msgauth's independent parser
			// and says the same.
			ar := r.AuthenticationResults("mx.rcpt.example")
			name, value, _ := strings.Cut(strings.TrimSuffix(ar, "\r\n"), ":")
			if name != "Authentication-Results" || strings.Count(ar, "\r\n") != strings.Count(ar, "\r\n\t")+1 {
				t.Fatalf("bad field %q", ar)
			}
			id, parsed, err := authres.Parse(strings.ReplaceAll(value, "\r\n\t", " "))
			if err != nil || id != "mx.rcpt.example" {
				t.Fatalf("authres.Parse(%q): %q %v", ar, id, err)
			}
			var spfN, dkimN, dmarcN int
			for _, p := range parsed {
				switch p := p.(type) {
				case *authres.SPFResult:
					spfN++
					if string(p.Value) != string(tc.spf) {
						t.Errorf("header spf=%s", p.Value)
					}
				case *authres.DKIMResult:
					if string(p.Value) != string(tc.dkim[dkimN]) || p.Domain != "sender.example" {
						t.Errorf("header dkim=%s d=%s", p.Value, p.Domain)
					}
					dkimN++
				case *authres.DMARCResult:
					dmarcN++
					if string(p.Value) != string(tc.dmarc) {
						t.Errorf("header dmarc=%s", p.Value)
					}
				}
			}
			if spfN != 1 || dkimN != len(tc.dkim) || dmarcN != 1 {
				t.Errorf("header has %d spf, %d dkim, %d dmarc results: %s", spfN, dkimN, dmarcN, ar)
			}
		})
	}
}

func TestCheckPct(t *testing.T) {
	w := newWorld(t)
	w.dns.zones["_dmarc.sender.example"].txt = []string{"v=DMARC1; p=reject; pct=10"}
	forged := strings.Replace(plainMsg, "alice@", "ceo@", 1)
	for _, tc := range []struct {
		pick int
		want Verdict
	}{{5, Reject}, {50, Quarantine}} {
		c := Checker{Resolver: w.dns, RejectOnDMARCReject: true, QuarantineOnDMARCQuarantine: true, Pick: func() int { return tc.pick }}
		r := c.Check(context.Background(), Input{netip.MustParseAddr("198.51.100.7"), "x.example", "", strings.NewReader(forged)})
		if r.Verdict != tc.want {
			t.Errorf("pick %d: %s (%s), want %s", tc.pick, r.Verdict, r.DMARC.Reason, tc.want)
		}
	}
}

// BenchmarkCheck measures Check on a typical dual-signed message with every
// answer from memory: SPF pass, two DKIM verifications, DMARC pass.
func BenchmarkCheck(b *testing.B) {
	w := newWorld(b)
	body := strings.Repeat("A line of a typical message body, some seventy characters long.\r\n", 60)
	msg := w.sign(b, strings.Replace(plainMsg, "Noon at the usual place?\r\n", body, 1))
	c := Checker{Resolver: w.dns, RejectOnDMARCReject: true}
	ip := netip.MustParseAddr("192.0.2.10")
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		r := c.Check(context.Background(), Input{ip, "mx.sender.example", "alice@sender.example", strings.NewReader(msg)})
		if r.DMARC.Result != DMARCPass {
			b.Fatal(r.DMARC)
		}
	}
}
