package addr

import (
	"errors"
	"strings"
	"testing"
)

func TestParsePath(t *testing.T) {
	for _, tc := range []struct {
		in            string
		requireDomain bool
		local, domain string
		err           error
	}{
		{"pp@example.org", true, "pp", "example.org", nil},
		{"PP@Example.ORG", true, "PP", "example.org", nil},
		{"pp@example.org.", true, "pp", "example.org", nil},
		{"first.last+tag@example.org", true, "first.last+tag", "example.org", nil},
		{"postmaster", false, "postmaster", "", nil},
		{"postmaster", true, "", "", ErrNoDomain},
		{"@relay.example:user@remote.example", true, "user", "remote.example", nil},
		{"@a.example,@b.example:user@remote.example", true, "user", "remote.example", nil},
		{`"user@remote.example"@example.org`, true, "user@remote.example", "example.org", nil},
		{`"a\"b"@example.org`, true, `a"b`, "example.org", nil},
		{"user%remote.example@example.org", true, "user%remote.example", "example.org", nil},
		{"remote.example!user@example.org", true, "remote.example!user", "example.org", nil},
		{"user@[192.0.2.1]", true, "user", "[192.0.2.1]", nil},
		{"user@[IPv6:2001:DB8::1]", true, "user", "[IPv6:2001:db8::1]", nil},
		{"δοκιμή@παράδειγμα.δοκιμή", true, "δοκιμή", "παράδειγμα.δοκιμή", nil},
		{"", true, "", "", ErrEmpty},
		{"a@@b", true, "", "", ErrSyntax},
		{"a b@example.org", true, "", "", ErrSyntax},
		{".a@example.org", true, "", "", ErrSyntax},
		{"a..b@example.org", true, "", "", ErrSyntax},
		{"a@exa_mple.org", true, "", "", ErrSyntax},
		{"a@-example.org", true, "", "", ErrSyntax},
		{"a@example..org", true, "", "", ErrSyntax},
		{"a@", true, "", "", ErrSyntax},
		{"a@[192.0.2.1", true, "", "", ErrSyntax},
		{"a@[300.0.2.1]", true, "", "", ErrSyntax},
		{"a@[IPv6:192.0.2.1]", true, "", "", ErrSyntax},
		{"a\x00b@example.org", true, "", "", ErrSyntax},
		{"a\r\nb@example.org", true, "", "", ErrSyntax},
		{"\xff@example.org", true, "", "", ErrSyntax},
		{`""@example.org`, true, "", "", ErrSyntax},
		{`"unterminated@example.org`, true, "", "", ErrSyntax},
		{"@relay.example", true, "", "", ErrSyntax},
		{strings.Repeat("a", 65) + "@example.org", true, "", "", ErrTooLong},
		{"a@" + strings.Repeat("b", 64) + ".org", true, "", "", ErrSyntax},
		{"a@" + strings.Repeat("b.", 130) + "org", true, "", "", ErrTooLong},
	} {
		a, err := ParsePath(tc.in, tc.requireDomain)
		if !errors.Is(err, tc.err) {
			t.Errorf("ParsePath(%q) error %v, want %v", tc.in, err, tc.err)
			continue
		}
		if err == nil && (a.Local != tc.local || a.Domain != tc.domain) {
			t.Errorf("ParsePath(%q) = %q @ %q, want %q @ %q", tc.in, a.Local, a.Domain, tc.local, tc.domain)
		}
	}
}

func TestStringQuotesWhenNeeded(t *testing.T) {
	for _, tc := range []struct {
		a    Address
		want string
	}{
		{Address{"pp", "example.org"}, "pp@example.org"},
		{Address{"user@remote", "example.org"}, `"user@remote"@example.org`},
		{Address{`a"b`, "example.org"}, `"a\"b"@example.org`},
		{Address{"a b", "example.org"}, `"a b"@example.org`},
		{Address{"postmaster", ""}, "postmaster"},
		{Address{}, ""},
	} {
		if got := tc.a.String(); got != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.a, got, tc.want)
		}
		// What String writes parses back to the same address.
		if tc.want != "" {
			back, err := ParsePath(tc.want, false)
			if err != nil || back != tc.a {
				t.Errorf("ParsePath(%q) = %#v, %v; want %#v", tc.want, back, err, tc.a)
			}
		}
	}
}

func TestSplitDetail(t *testing.T) {
	for _, tc := range []struct {
		in, user, detail string
		plus             bool
	}{
		{"pp", "pp", "", false},
		{"pp+shop", "pp", "shop", true},
		{"pp+", "pp", "", true},
		{"pp+a+b", "pp", "a+b", true},
		{"+x", "", "x", true},
	} {
		u, d, p := SplitDetail(tc.in)
		if u != tc.user || d != tc.detail || p != tc.plus {
			t.Errorf("SplitDetail(%q) = %q, %q, %v", tc.in, u, d, p)
		}
	}
}

// Inner reads a host hidden in the local part as Sendmail's canonify and
// Parse0 do (proto.m4 ruleset 0 "...@here -> ...", the percent hack).
func TestInner(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want "" = no hidden host
	}{
		{"user%remote.example@example.org", "user@remote.example"},           // the percent hack
		{`"user@remote.example"@example.org`, "user@remote.example"},         // a quoted @
		{`"user%remote.example"@example.org`, "user@remote.example"},         // quoted %
		{"user%a.example%b.example@example.org", "user%a.example@b.example"}, // the rightmost % first
		{`"a%b@c.example"@example.org`, "a%b@c.example"},                     // @ before %
		{`"user%REMOTE.Example."@example.org`, "user@remote.example"},        // the host is normalised
		{`"user%[192.0.2.1]"@example.org`, "user@[192.0.2.1]"},               // a literal
		{"user%remote.example", "user@remote.example"},                       // unqualified
		{"user@example.org", ""},
		{"remote.example!user@example.org", ""}, // UUCP is no hidden host here
		{"user%@example.org", ""},               // nothing after %
		{"%remote.example@example.org", ""},     // nothing before %
		{"user%bad_host@example.org", ""},       // not a domain
	} {
		a, err := ParsePath(tc.in, false)
		if err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		got, ok := a.Inner()
		if tc.want == "" {
			if ok {
				t.Errorf("%s: Inner = %s, want none", tc.in, got)
			}
			continue
		}
		if !ok || got.String() != tc.want {
			t.Errorf("%s: Inner = %s %v, want %s", tc.in, got, ok, tc.want)
		}
	}
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"pp@example.org", `"a b"@c`, "@a,@b:c@d", "u@[IPv6:::1]", "postmaster", "a@b."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParsePath(s, false)
		if err != nil {
			return
		}
		if len(a.Local) > MaxLocalPart || len(a.Domain) > MaxDomain {
			t.Fatalf("%q: limits exceeded: %#v", s, a)
		}
		// The canonical form parses to the same address.
		back, err := ParsePath(a.String(), false)
		if err != nil || back != a {
			t.Fatalf("%q -> %#v -> %q -> %#v, %v", s, a, a.String(), back, err)
		}
		if in, ok := a.Inner(); ok && (len(in.Local) >= len(a.Local) || in.Domain == "") {
			t.Fatalf("%q: Inner %#v does not shrink the local part", s, in)
		}
	})
}
