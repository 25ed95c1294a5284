package route

import (
	"context"
	"testing"

	"github.com/posthorn/posthorn/internal/maps"
)

func TestOwns(t *testing.T) {
	tb := tables(t, map[string]string{
		"local-host-names": "example.org\nexample.net\n",
		"virtusertable": "info@example.org\tpp\n" +
			"sales@example.org\tbob\n" +
			"shared@example.org\tstaff\n" +
			"gone@example.org\terror:nouser No such user\n" +
			"out@example.org\tsomeone@remote.example\n" +
			"bob@example.net\tpp\n" + // pp's own name is not bob's at example.net
			"@catchall.example\tpp\n" +
			"bob@catchall.example\tbob\n",
		"aliases": "webmaster: pp\n" +
			"staff: pp, bob\n" +
			"copies: pp, pp@elsewhere.example\n" +
			"fwd: bob\n" +
			"carol: carol@elsewhere.example\n" +
			"loop: loop2\nloop2: loop\n",
	})
	r := New(Config{Hostname: "mx.example.org", Tables: func() *maps.Tables { return tb },
		Accounts: fakeAccounts{"pp": true, "bob": true, "carol": true}})
	for _, tc := range []struct {
		account, address string
		want             bool
	}{
		// The account's name at each local domain.
		{"pp", "pp@mx.example.org", true},
		{"pp", "pp@example.org", true},
		{"pp", "PP@Example.NET", true},
		{"PP", "pp@example.org", true},
		{"pp", "pp+lists@example.org", true},
		{"pp", "pp@catchall.example", true}, // a virtusertable domain (through the catch-all)
		// Not at a remote domain, nor an address literal, nor unqualified.
		{"pp", "pp@remote.example", false},
		{"pp", "pp@[127.0.0.1]", false},
		{"pp", "pp", false},
		// Another account's name.
		{"pp", "bob@example.org", false},
		{"bob", "pp@example.org", false},
		// virtusertable and aliases addresses that resolve to the account.
		{"pp", "info@example.org", true},
		{"bob", "info@example.org", false},
		{"bob", "sales@example.org", true},
		{"pp", "sales@example.org", false},
		{"pp", "webmaster@example.org", true},
		{"pp", "webmaster@mx.example.org", true},
		{"bob", "fwd@example.org", true},
		{"pp", "bob@example.net", true},
		{"bob", "bob@example.net", false}, // virtusertable sends it to pp
		{"pp", "anything@catchall.example", true},
		{"bob", "bob@catchall.example", true},
		{"pp", "bob@catchall.example", false},
		// An alias that reaches other accounts too is nobody's.
		{"pp", "staff@example.org", false},
		{"bob", "staff@example.org", false},
		{"pp", "shared@example.org", false},
		// Copies to remote addresses do not count against it.
		{"pp", "copies@example.org", true},
		// The own name of an account whose mail is forwarded away.
		{"carol", "carol@example.org", true},
		{"pp", "carol@example.org", false},
		// Refused, unknown, looping, or remote only: nobody's.
		{"pp", "gone@example.org", false},
		{"pp", "nobody@example.org", false},
		{"pp", "out@example.org", false},
		{"pp", "loop@example.org", false},
		{"", "pp@example.org", false},
	} {
		got, err := r.Owns(context.Background(), tc.account, a(tc.address))
		if err != nil {
			t.Errorf("Owns(%q, %q): %v", tc.account, tc.address, err)
			continue
		}
		if got != tc.want {
			t.Errorf("Owns(%q, %q) = %v, want %v", tc.account, tc.address, got, tc.want)
		}
	}
}

// A failed account lookup is an error (the caller answers 4xx), not "not
// yours".
func TestOwnsTemporaryError(t *testing.T) {
	tb := tables(t, map[string]string{"aliases": "tmp: broken-db\n"})
	r := New(Config{Hostname: "example.org", Tables: func() *maps.Tables { return tb }, Accounts: fakeAccounts{"pp": true}})
	if ok, err := r.Owns(context.Background(), "pp", a("tmp@example.org")); err == nil || ok {
		t.Errorf("Owns with a failing store = %v, %v; want an error", ok, err)
	}
}
