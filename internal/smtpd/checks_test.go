package smtpd_test

import (
	"context"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/antispam"
	"github.com/posthorn/posthorn/internal/dnscache"
	"github.com/posthorn/posthorn/internal/dnsutil"
	"github.com/posthorn/posthorn/internal/mailauth"
	"github.com/posthorn/posthorn/internal/smtpd"
)

// Each test below plays an outside client from 127.0.0.2 (127.0.0.3 ...)
// and a trusted one from 127.0.0.1, which no check applies to.

func withTables(access string) map[string]string {
	t := map[string]string{}
	for k, v := range defaultTables {
		t[k] = v
	}
	t["access"] = access
	return t
}

// A client a DNSBL lists is refused at connect with the list's reason, and
// only it: other clients, loopback and access OK/RELAY clients are greeted.
func TestCheckDNSBL(t *testing.T) {
	h := newHarness(t, harnessOpts{
		tables: withTables("Connect:127.0.0.4\tOK\n"),
		checks: func(h *harness) *smtpd.Checks {
			return &smtpd.Checks{DNSBL: &antispam.DNSBL{Resolver: dnsutil.New(h.dns.Addr)}, DNSBLZones: []string{"bl.example"}}
		},
	})
	for _, ip := range []string{"2.0.0.127", "1.0.0.127", "4.0.0.127"} {
		h.dns.MustAdd(t, ip+".bl.example. 60 IN A 127.0.0.2", ip+".bl.example. 60 IN TXT \"listed for spam, see https://bl.example/q\"")
	}
	c := h.dial("127.0.0.2")
	g := c.read()
	if g.code != 554 || g.enhanced() != "5.7.1" || !strings.Contains(g.text(), "bl.example: listed for spam, see https://bl.example/q") {
		t.Fatalf("listed client greeted with %v", g)
	}
	c.expect("EHLO x.example", 503, "5.7.1")
	c.expect("QUIT", 221, "")
	if n := strings.Count(h.logs.String(), "smtp connection rejected"); n != 1 {
		t.Errorf("%d log lines for the refusal, want 1:\n%s", n, h.logs.String())
	}
	if !strings.Contains(h.logs.String(), "dnsbl bl.example lists 127.0.0.2") {
		t.Errorf("log line without the reason:\n%s", h.logs.String())
	}
	for _, ip := range []string{"127.0.0.3", "127.0.0.1", "127.0.0.4"} {
		if g := h.dial(ip).read(); g.code != 220 {
			t.Errorf("%s: greeting %v", ip, g)
		}
	}
}

// Past the connection rate a client gets 421 and the connection closes;
// loopback is never counted.
func TestCheckConnectionRate(t *testing.T) {
	h := newHarness(t, harnessOpts{checks: func(*harness) *smtpd.Checks {
		l, err := antispam.NewLimiter(antispam.LimiterOptions{PerMinute: 1, Burst: 2, What: "connections"})
		if err != nil {
			t.Fatal(err)
		}
		return &smtpd.Checks{ConnLimit: l}
	}})
	for i := 0; i < 2; i++ {
		if g := h.dial("127.0.0.2").read(); g.code != 220 {
			t.Fatalf("connection %d: %v", i+1, g)
		}
	}
	if g := h.dial("127.0.0.2").read(); g.code != 421 || !strings.Contains(g.text(), "connections") {
		t.Errorf("third connection: %v, want 421 naming the limit", g)
	}
	if g := h.dial("127.0.0.3").read(); g.code != 220 {
		t.Errorf("another address: %v", g)
	}
	for i := 0; i < 3; i++ {
		if g := h.dial("").read(); g.code != 220 {
			t.Errorf("loopback connection %d: %v", i+1, g)
		}
	}
}

// A client that talks before the greeting is dropped with 554; one that
// waits is greeted after the pause.
func TestCheckEarlyTalker(t *testing.T) {
	const wait = 300 * time.Millisecond
	h := newHarness(t, harnessOpts{checks: func(*harness) *smtpd.Checks { return &smtpd.Checks{EarlyTalkerWait: wait} }})
	c := h.dial("127.0.0.2")
	c.send("EHLO spam.example\r\n")
	if g := c.read(); g.code != 554 {
		t.Errorf("early talker: %v", g)
	}
	start := time.Now()
	if g := h.dial("127.0.0.3").read(); g.code != 220 {
		t.Errorf("patient client: %v", g)
	}
	if d := time.Since(start); d < wait {
		t.Errorf("greeted after %v, before the %v pause", d, wait)
	}
	start = time.Now()
	h.dial("").hello()
	if d := time.Since(start); d > wait {
		t.Errorf("loopback waited %v", d)
	}
}

// HELO sanity: a name that is not fully qualified, or ours, is refused;
// a good one passes; loopback is not judged.
func TestCheckHELO(t *testing.T) {
	h := newHarness(t, harnessOpts{checks: func(*harness) *smtpd.Checks {
		hc := antispam.DefaultHELOCheck([]string{"mx.example.org"}, nil)
		hc.Local = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		return &smtpd.Checks{HELO: &hc}
	}})
	c := h.dial("127.0.0.2")
	c.read()
	for _, helo := range []string{"localhost", "mx.example.org", "[10.1.2.3]"} {
		if r := c.cmd("EHLO " + helo); r.code/100 != 5 {
			t.Errorf("EHLO %s: %v, want a refusal", helo, r)
		}
	}
	c.expect("MAIL FROM:<a@remote.example>", 503, "")
	c.expect("EHLO client.example", 250, "")
	c.expect("HELO [127.0.0.2]", 250, "")
	l := h.dial("")
	l.read()
	l.expect("EHLO localhost", 250, "")
}

// Without forward-confirmed reverse DNS a client is refused (RFC 7372's
// X.7.25); with it, greeted.
func TestCheckFCrDNS(t *testing.T) {
	h := newHarness(t, harnessOpts{checks: func(*harness) *smtpd.Checks { return &smtpd.Checks{RequireFCrDNS: true} }})
	if err := h.dns.AddPTR("127.0.0.3", "client.example"); err != nil {
		t.Fatal(err)
	}
	h.dns.MustAdd(t, "2.0.0.127.in-addr.arpa. 60 IN PTR forged.example.")
	if g := h.dial("127.0.0.2").read(); g.code != 554 || g.enhanced() != "5.7.25" {
		t.Errorf("forged reverse name: %v, want 554 5.7.25 (RFC 5321 section 3.1's greeting)", g)
	}
	if g := h.dial("127.0.0.3").read(); g.code != 220 {
		t.Errorf("confirmed name: %v", g)
	}
}

// The message rate is counted at MAIL: past it, 451 4.7.1.
func TestCheckMessageRate(t *testing.T) {
	h := newHarness(t, harnessOpts{checks: func(*harness) *smtpd.Checks {
		l, _ := antispam.NewLimiter(antispam.LimiterOptions{PerMinute: 1, Burst: 1, What: "messages"})
		return &smtpd.Checks{MsgLimit: l}
	}})
	c := h.dial("127.0.0.2")
	c.hello()
	c.expect("MAIL FROM:<a@remote.example>", 250, "")
	c.expect("RSET", 250, "")
	if r := c.expect("MAIL FROM:<a@remote.example>", 451, "4.7.1"); !strings.Contains(r.text(), "messages") {
		t.Errorf("reply does not say which limit: %v", r)
	}
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeClock) Now() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.t }
func (f *fakeClock) Add(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

// Greylisting defers a new triplet at RCPT with 451 4.7.1 and accepts the
// retry after the delay; a recipient that does not exist is refused for
// what it is, not greylisted; loopback is exempt.
func TestCheckGreylist(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	h := newHarness(t, harnessOpts{checks: func(h *harness) *smtpd.Checks {
		g, err := antispam.OpenGreylist(filepath.Join(t.TempDir(), "grey.db"), antispam.GreylistOptions{Delay: time.Minute, Expiry: time.Hour, Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { g.Close() })
		return &smtpd.Checks{Greylist: g}
	}})
	c := h.dial("127.0.0.2")
	c.hello()
	c.expect("MAIL FROM:<a@remote.example>", 250, "")
	c.expect("RCPT TO:<pp@example.org>", 451, "4.7.1")
	c.expect("RCPT TO:<nobody@example.org>", 550, "")
	c.expect("RSET", 250, "")
	clock.Add(30 * time.Second)
	c.expect("MAIL FROM:<a@remote.example>", 250, "")
	c.expect("RCPT TO:<pp@example.org>", 451, "4.7.1")
	c.expect("RSET", 250, "")
	clock.Add(time.Minute)
	c.expect("MAIL FROM:<a@remote.example>", 250, "")
	c.expect("RCPT TO:<pp@example.org>", 250, "")
	if r := c.sendData(simpleMessage); r.code != 250 {
		t.Fatalf("DATA: %v", r)
	}
	l := h.dial("")
	l.hello()
	l.expect("MAIL FROM:<b@remote.example>", 250, "")
	l.expect("RCPT TO:<bob@example.org>", 250, "")
}

// authHarness serves with the SPF/DKIM/DMARC checks on, against zones in the
// harness's DNS: remote.example lets 127.0.0.2 send (SPF) and publishes
// p=reject; quarantine.example publishes p=quarantine; spf-only.example has
// "-all" and no DMARC record.
func authHarness(t *testing.T) *harness {
	h := newHarness(t, harnessOpts{checks: func(h *harness) *smtpd.Checks {
		return &smtpd.Checks{Auth: &mailauth.Checker{
			Resolver:                    dnsutil.New(h.dns.Addr),
			RejectOnDMARCReject:         true,
			QuarantineOnDMARCQuarantine: true,
			SPFFailPolicy:               mailauth.Reject,
		}}
	}})
	h.dns.MustAdd(t,
		`remote.example. 60 IN TXT "v=spf1 ip4:127.0.0.2 -all"`,
		`_dmarc.remote.example. 60 IN TXT "v=DMARC1; p=reject"`,
		`quarantine.example. 60 IN TXT "v=spf1 -all"`,
		`_dmarc.quarantine.example. 60 IN TXT "v=DMARC1; p=quarantine"`,
		`spf-only.example. 60 IN TXT "v=spf1 -all"`,
	)
	return h
}

func sendFrom(t *testing.T, h *harness, ip, mailFrom, msg string) reply {
	t.Helper()
	c := h.dial(ip)
	c.hello()
	c.expect("MAIL FROM:<"+mailFrom+">", 250, "")
	c.expect("RCPT TO:<pp@example.org>", 250, "")
	return c.sendData(msg)
}

// Mail that passes gets one Authentication-Results field of ours, right
// below Return-Path; a forged one of our authserv-id is removed, another
// server's kept.
func TestCheckAuthPass(t *testing.T) {
	h := authHarness(t)
	msg := "Authentication-Results: MX.example.org; dkim=pass header.d=remote.example\r\n" +
		"Authentication-Results: mx.example.org;\r\n\tspf=pass smtp.mailfrom=remote.example\r\n" +
		"Authentication-Results: other.example; spf=fail\r\n" + simpleMessage
	if r := sendFrom(t, h, "127.0.0.2", "sender@remote.example", msg); r.code != 250 {
		t.Fatalf("DATA: %v", r)
	}
	ms := h.messages("pp")
	if len(ms) != 1 {
		t.Fatalf("%d messages", len(ms))
	}
	m := ms[0]
	// Return-Path, our Received, then ours, above everything the client sent.
	rcvd, ours, theirs := strings.Index(m, "\r\nReceived: from client.example"), strings.Index(m, "\r\nAuthentication-Results: mx.example.org;"), strings.Index(m, "Authentication-Results: other.example")
	if !strings.HasPrefix(m, "Return-Path:") || rcvd < 0 || ours < rcvd || theirs < ours {
		t.Errorf("field order (Received at %d, ours at %d, the client's at %d):\n%s", rcvd, ours, theirs, m)
	}
	if n := strings.Count(strings.ToLower(m), "authentication-results: mx.example.org"); n != 1 {
		t.Errorf("%d fields of our authserv-id, want 1:\n%s", n, m)
	}
	for _, want := range []string{"spf=pass", "dmarc=pass", "header.from=remote.example", "Authentication-Results: other.example; spf=fail\r\n"} {
		if !strings.Contains(m, want) {
			t.Errorf("no %q in:\n%s", want, m)
		}
	}
	if strings.Contains(m, "\tspf=pass smtp.mailfrom=remote.example") {
		t.Errorf("forged folded field kept:\n%s", m)
	}
	if env := h.rec.envs[0]; env.Sign || env.Quarantine {
		t.Errorf("mail from outside: Sign %v, Quarantine %v", env.Sign, env.Quarantine)
	}
}

// DMARC p=reject failures and SPF -all without DMARC are refused with 550
// 5.7.1 and a reason; p=quarantine failures go to Junk; loopback mail is
// not checked (and is signed on its way out).
func TestCheckAuthPolicies(t *testing.T) {
	h := authHarness(t)
	forged := strings.Replace(simpleMessage, "sender@remote.example", "ceo@remote.example", 1)
	r := sendFrom(t, h, "127.0.0.3", "bounce@elsewhere.example", forged)
	if r.code != 550 || r.enhanced() != "5.7.1" || !strings.Contains(strings.ToLower(r.text()), "dmarc") {
		t.Errorf("forged From under p=reject: %v", r)
	}
	r = sendFrom(t, h, "127.0.0.3", "x@spf-only.example", strings.Replace(simpleMessage, "sender@remote.example", "x@spf-only.example", 1))
	if r.code != 550 || r.enhanced() != "5.7.1" || !strings.Contains(strings.ToLower(r.text()), "spf") {
		t.Errorf("SPF -all without DMARC: %v", r)
	}
	if n := strings.Count(h.logs.String(), "smtp message rejected"); n != 2 {
		t.Errorf("%d refusal log lines, want 2:\n%s", n, h.logs.String())
	}
	r = sendFrom(t, h, "127.0.0.3", "x@quarantine.example", strings.Replace(simpleMessage, "sender@remote.example", "x@quarantine.example", 1))
	if r.code != 250 {
		t.Fatalf("p=quarantine: %v", r)
	}
	if n := len(h.messages("pp")); n != 0 {
		t.Errorf("INBOX holds %d messages, want 0", n)
	}
	ctx := context.Background()
	a, _ := h.st.GetAccount(ctx, "pp")
	mb, err := h.st.GetMailbox(ctx, a.ID, "Junk")
	if err != nil {
		t.Fatal(err)
	}
	if ms, _ := h.st.ListMessages(ctx, mb.ID, 0, false); len(ms) != 1 {
		t.Errorf("Junk holds %d messages, want 1", len(ms))
	}
	// From 127.0.0.1 nothing is checked: no field, and the forged From
	// (our own users' business) passes.
	if r := sendFrom(t, h, "", "bounce@elsewhere.example", forged); r.code != 250 {
		t.Fatalf("loopback: %v", r)
	}
	ms := h.messages("pp")
	if len(ms) != 1 || strings.Contains(ms[0], "Authentication-Results") {
		t.Errorf("loopback message: %q", ms)
	}
	h.rec.mu.Lock()
	last := h.rec.envs[len(h.rec.envs)-1]
	h.rec.mu.Unlock()
	if !last.Sign {
		t.Error("loopback mail not marked for signing")
	}
}

// BenchmarkInboundChecks is inbound throughput from an outside client
// (127.0.0.2) with the checks off and on: SPF, DKIM (an Ed25519 and an RSA
// signature) and DMARC against an in-process DNS server (through the
// dnscache the server uses), the HELO check and
// both rate limiters at their defaults. Issue 7 wants "on" at 70% of "off"
// or better: compare the ns/op of the two.
func BenchmarkInboundChecks(b *testing.B) {
	keys := b.TempDir()
	if err := mailauth.GenerateKeys(keys, "remote.example", "s1"); err != nil {
		b.Fatal(err)
	}
	signer, err := mailauth.LoadSigner(keys, "remote.example")
	if err != nil {
		b.Fatal(err)
	}
	msg := simpleMessage + strings.Repeat(strings.Repeat("x", 76)+"\r\n", 50)
	sig, err := signer.Sign(strings.NewReader(msg))
	if err != nil {
		b.Fatal(err)
	}
	signed := sig + msg
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			h := newHarness(b, harnessOpts{checks: func(h *harness) *smtpd.Checks {
				if !on {
					return nil
				}
				conn, _ := antispam.NewLimiter(antispam.LimiterOptions{PerMinute: antispam.DefaultConnectionsPerMinute})
				msgs, _ := antispam.NewLimiter(antispam.LimiterOptions{PerMinute: antispam.DefaultMessagesPerMinute})
				hc := antispam.DefaultHELOCheck([]string{"mx.example.org"}, nil)
				return &smtpd.Checks{ConnLimit: conn, MsgLimit: msgs, HELO: &hc, Auth: &mailauth.Checker{
					Resolver: dnscache.New(dnsutil.New(h.dns.Addr)), RejectOnDMARCReject: true, QuarantineOnDMARCQuarantine: true, SPFFailPolicy: mailauth.Reject,
				}}
			}})
			recs, _ := signer.Records()
			for _, r := range recs {
				v := r.Value
				var parts []string
				for len(v) > 200 {
					parts = append(parts, `"`+v[:200]+`"`)
					v = v[200:]
				}
				parts = append(parts, `"`+v+`"`)
				h.dns.MustAdd(b, r.Name+". 60 IN TXT "+strings.Join(parts, " "))
			}
			h.dns.MustAdd(b, `remote.example. 60 IN TXT "v=spf1 ip4:127.0.0.0/24 -all"`, `_dmarc.remote.example. 60 IN TXT "v=DMARC1; p=reject"`)
			b.SetBytes(int64(len(signed)))
			b.SetParallelism(4)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				c := h.dial("127.0.0.2")
				c.hello()
				for pb.Next() {
					c.send("MAIL FROM:<sender@remote.example>\r\nRCPT TO:<pp@example.org>\r\nDATA\r\n")
					for i := 0; i < 3; i++ {
						if r := c.read(); r.code >= 400 {
							b.Error(r)
							return
						}
					}
					c.send(signed + ".\r\n")
					if r := c.read(); r.code != 250 {
						b.Error(r)
						return
					}
				}
			})
			b.StopTimer()
			if on {
				// Every message was checked and passed.
				ms := h.messages("pp")
				if len(ms) == 0 || !strings.Contains(ms[len(ms)-1], "dmarc=pass") || strings.Count(ms[len(ms)-1], "dkim=pass") != 2 {
					b.Fatalf("last message not authenticated:\n%.1000s", ms[len(ms)-1])
				}
			}
		})
	}
}
