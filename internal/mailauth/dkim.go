package mailauth

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/posthorn/posthorn/internal/dnsutil"
)

// DKIMResult is a DKIM result as RFC 8601 section 2.7.1 names it.
type DKIMResult string

// The DKIM results (RFC 8601 section 2.7.1).
const (
	DKIMNone      DKIMResult = "none"
	DKIMPass      DKIMResult = "pass"
	DKIMFail      DKIMResult = "fail"
	DKIMNeutral   DKIMResult = "neutral"
	DKIMTempError DKIMResult = "temperror"
	DKIMPermError DKIMResult = "permerror"
)

// DefaultMaxSignatures is how many DKIM signatures of one message are
// verified when no other limit is set: each costs a DNS query and a public
// key operation, and a sender can add any number (RFC 6376 section 8.4).
const DefaultMaxSignatures = 5

// ErrTooManySignatures is returned with the verified signatures when a
// message has more than the limit; the ones beyond it were not looked at.
var ErrTooManySignatures = dkim.ErrTooManySignatures

// DKIMSignature is the outcome of verifying one DKIM-Signature field.
type DKIMSignature struct {
	Domain     string // d=, the signing domain (SDID)
	Selector   string // s=
	Algorithm  string // a=, e.g. "ed25519-sha256"
	Identifier string // i=, the AUID
	B          string // the start of b=, enough to tell signatures apart (RFC 6008)
	Result     DKIMResult
	Reason     string // why it did not pass
}

// VerifyDKIM verifies the DKIM signatures of the message read from msg, at
// most max of them (DefaultMaxSignatures when max <= 0), in the order they
// appear. Key records are looked up through r. With more signatures than max
// it returns the first max results and ErrTooManySignatures. A message that
// cannot be read gives an error and no results.
func VerifyDKIM(ctx context.Context, r dnsutil.Resolver, msg io.Reader, max int) ([]DKIMSignature, error) {
	hdr, body, err := readHeader(msg)
	if err != nil {
		return nil, err
	}
	return verifyDKIM(ctx, r, hdr, body, max)
}

func verifyDKIM(ctx context.Context, r dnsutil.Resolver, hdr []byte, body io.Reader, max int) ([]DKIMSignature, error) {
	if max <= 0 {
		max = DefaultMaxSignatures
	}
	return verifyOwn(ctx, r, hdr, body, max)
}

// describeSignature reads the tags a result reports (d, s, a, i, b) from a
// DKIM-Signature value (RFC 6376 section 3.2 tag-list); a malformed list just
// leaves them empty.
func describeSignature(v string) DKIMSignature {
	var s DKIMSignature
	for _, spec := range strings.Split(v, ";") {
		k, val, ok := strings.Cut(spec, "=")
		if !ok {
			continue
		}
		val = stripFWS(val)
		switch strings.TrimSpace(k) {
		case "d":
			s.Domain = strings.ToLower(val)
		case "s":
			s.Selector = val
		case "a":
			s.Algorithm = strings.ToLower(val)
		case "i":
			s.Identifier = val
		case "b":
			// RFC 6008 section 4: at least 8 characters of b= identify
			// a signature; printing more only lengthens the header.
			if len(val) > 12 {
				val = val[:12]
			}
			s.B = val
		}
	}
	return s
}

func stripFWS(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, s)
}

func (s DKIMSignature) String() string {
	if s.Reason != "" {
		return fmt.Sprintf("dkim=%s d=%s s=%s a=%s (%s)", s.Result, s.Domain, s.Selector, s.Algorithm, s.Reason)
	}
	return fmt.Sprintf("dkim=%s d=%s s=%s a=%s", s.Result, s.Domain, s.Selector, s.Algorithm)
}
