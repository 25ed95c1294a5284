package antispam

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/policy"
)

func TestHELOCheck(t *testing.T) {
	all := DefaultHELOCheck([]string{"mx.posthorn.test", "posthorn.test."}, []netip.Addr{netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("2001:db8::25")})
	noSyntax, noLiteral, noImpersonation := all, all, all
	noSyntax.Syntax = false
	noLiteral.Literal = false
	noImpersonation.Impersonation = false
	localNet := all
	localNet.Local = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}

	long63 := strings.Repeat("a", 63)
	tests := []struct {
		name   string
		check  HELOCheck
		helo   string
		client string
		code   int    // 0: accepted
		says   string // a substring of the reply
	}{
		{"a FQDN", all, "mail.example.org", "192.0.2.1", 0, ""},
		{"a FQDN with its final dot", all, "mail.example.org.", "192.0.2.1", 0, ""},
		{"hyphens and digits inside", all, "mx-1.a2.example.org", "192.0.2.1", 0, ""},
		{"63-octet label", all, long63 + ".example.org", "192.0.2.1", 0, ""},
		{"64-octet label", all, long63 + "a.example.org", "192.0.2.1", 501, "label too long"},
		{"too long", all, strings.Repeat(long63+".", 4) + "org", "192.0.2.1", 501, "too long"},
		{"single label", all, "localhost", "192.0.2.1", 501, "not a fully qualified"},
		{"single label with a dot", all, "mail.", "192.0.2.1", 501, "not a fully qualified"},
		{"empty", all, "", "192.0.2.1", 501, "empty"},
		{"bare IPv4", all, "192.0.2.1", "192.0.2.1", 501, "[192.0.2.1]"},
		{"bare IPv6", all, "2001:db8::1", "192.0.2.1", 501, "in brackets"},
		{"numeric TLD", all, "host.123", "192.0.2.1", 501, "all-numeric"},
		{"underscore", all, "my_host.example.org", "192.0.2.1", 501, "character"},
		{"leading hyphen", all, "-host.example.org", "192.0.2.1", 501, "hyphen"},
		{"trailing hyphen", all, "host-.example.org", "192.0.2.1", 501, "hyphen"},
		{"empty label", all, "host..example.org", "192.0.2.1", 501, "empty label"},
		{"leading dot", all, ".example.org", "192.0.2.1", 501, "empty label"},
		{"two final dots", all, "example.org..", "192.0.2.1", 501, "empty label"},
		{"8-bit", all, "h\xc3\xa9llo.example", "192.0.2.1", 501, "h??llo.example"},
		{"syntax off", noSyntax, "localhost", "192.0.2.1", 0, ""},

		{"own IPv4 literal", all, "[192.0.2.1]", "192.0.2.1", 0, ""},
		{"own IPv4 literal from a mapped client", all, "[192.0.2.1]", "::ffff:192.0.2.1", 0, ""},
		{"own IPv6 literal", all, "[IPv6:2001:db8::1]", "2001:db8::1", 0, ""},
		{"IPv6 tag in lower case", all, "[ipv6:2001:db8::1]", "2001:db8::1", 0, ""},
		{"IPv6 literal, long form", all, "[IPv6:2001:0db8:0:0:0:0:0:1]", "2001:db8::1", 0, ""},
		{"someone else's IPv4 literal", all, "[192.0.2.2]", "192.0.2.1", 550, "[192.0.2.2] is not your address [192.0.2.1]"},
		{"someone else's IPv6 literal", all, "[IPv6:2001:db8::2]", "2001:db8::1", 550, "not your address"},
		{"IPv6 literal from an IPv4 client", all, "[IPv6:2001:db8::1]", "192.0.2.1", 550, "not your address"},
		{"mapped IPv6 literal names the IPv4 address", all, "[IPv6:::ffff:192.0.2.1]", "192.0.2.1", 0, ""},
		{"mismatch with the check off", noLiteral, "[192.0.2.2]", "192.0.2.1", 0, ""},
		{"IPv6 without its tag", all, "[2001:db8::1]", "2001:db8::1", 501, "bad address literal"},
		{"IPv4 under the IPv6 tag", all, "[IPv6:192.0.2.1]", "192.0.2.1", 501, "bad IPv6"},
		{"IPv6 with a zone", all, "[IPv6:fe80::1%eth0]", "fe80::1", 501, "bad IPv6"},
		{"unterminated literal", all, "[192.0.2.1", "192.0.2.1", 501, "unterminated"},
		{"empty literal", all, "[]", "192.0.2.1", 501, "unterminated"},
		{"general literal", all, "[x-tag:something]", "192.0.2.1", 501, "bad address literal"},
		{"octets out of range", all, "[192.0.2.256]", "192.0.2.1", 501, "bad address literal"},

		{"our name from a stranger", all, "mx.posthorn.test", "192.0.2.1", 550, "is this host"},
		{"our name in other case, with a dot", all, "MX.Posthorn.TEST.", "192.0.2.1", 550, "is this host"},
		{"our other name (configured with a dot)", all, "posthorn.test", "192.0.2.1", 550, "is this host"},
		{"a name under ours is not ours", all, "a.mx.posthorn.test", "192.0.2.1", 0, ""},
		{"our name from loopback", all, "mx.posthorn.test", "127.0.0.1", 0, ""},
		{"our name from ::1", all, "mx.posthorn.test", "::1", 0, ""},
		{"our name from our own address", all, "mx.posthorn.test", "198.51.100.1", 0, ""},
		{"our name from a configured local network", localNet, "mx.posthorn.test", "10.9.9.9", 0, ""},
		{"configured local networks replace loopback", localNet, "mx.posthorn.test", "127.0.0.1", 550, "is this host"},
		{"our address literal from a stranger, literal check off", noLiteral, "[198.51.100.1]", "192.0.2.1", 550, "is this host"},
		{"our IPv6 literal from a stranger, literal check off", noLiteral, "[IPv6:2001:db8::25]", "2001:db8::9", 550, "is this host"},
		{"our address literal from us", all, "[198.51.100.1]", "198.51.100.1", 0, ""},
		{"impersonation check off", noImpersonation, "mx.posthorn.test", "192.0.2.1", 0, ""},
		{"no client address: name checks only", all, "mx.posthorn.test", "", 0, ""},
		{"no checks at all", HELOCheck{}, "", "192.0.2.1", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var client netip.Addr
			if tt.client != "" {
				client = netip.MustParseAddr(tt.client)
			}
			d := tt.check.Check(tt.helo, client)
			if tt.code == 0 {
				if d.Verdict != policy.Accept {
					t.Errorf("Check(%q, %s) = %+v, want accept", tt.helo, tt.client, d)
				}
				return
			}
			if d.Verdict != policy.Reject || d.Code != tt.code {
				t.Fatalf("Check(%q, %s) = %+v, want %d", tt.helo, tt.client, d, tt.code)
			}
			wantEnh := map[int]string{501: "5.5.2", 550: "5.7.1"}[tt.code]
			if d.Enhanced != wantEnh {
				t.Errorf("enhanced code %s, want %s", d.Enhanced, wantEnh)
			}
			if !strings.Contains(d.Text, tt.says) {
				t.Errorf("reply %q does not say %q", d.Text, tt.says)
			}
			if !strings.HasPrefix(d.Reason, "helo ") {
				t.Errorf("reason %q", d.Reason)
			}
		})
	}
}

// FuzzHELOCheck: no argument panics, none gets a CR, LF or 8-bit byte into
// the reply or the log line, and one that is accepted with every check on
// is a name of letters, digits, hyphens and dots or a literal in brackets.
func FuzzHELOCheck(f *testing.F) {
	for _, s := range []string{"mail.example.org", "[192.0.2.1]", "[IPv6:2001:db8::1]", "localhost", "", "[", "a..b", "x\r\n250 OK", "[IPv6:::ffff:1.2.3.4]", "1.2.3.4"} {
		f.Add(s)
	}
	check := DefaultHELOCheck([]string{"mx.posthorn.test"}, []netip.Addr{netip.MustParseAddr("198.51.100.1")})
	client := netip.MustParseAddr("192.0.2.1")
	f.Fuzz(func(t *testing.T, helo string) {
		d := check.Check(helo, client)
		for _, s := range []string{d.Text, d.Reason} {
			for i := 0; i < len(s); i++ {
				if s[i] < 0x20 || s[i] > 0x7e {
					t.Fatalf("byte %#x in %q", s[i], s)
				}
			}
		}
		if d.Verdict != policy.Accept {
			return
		}
		if strings.HasPrefix(helo, "[") {
			if helo != "[192.0.2.1]" && !strings.HasPrefix(strings.ToLower(helo), "[ipv6:") {
				t.Fatalf("accepted literal %q from 192.0.2.1", helo)
			}
			return
		}
		if strings.Trim(helo, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.") != "" || !strings.Contains(strings.TrimSuffix(helo, "."), ".") {
			t.Fatalf("accepted %q", helo)
		}
	})
}
