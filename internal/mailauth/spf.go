package mailauth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"blitiri.com.ar/go/spf"

	"github.com/posthorn/posthorn/internal/dnsutil"
)

// SPFResult is an SPF result as RFC 7208 section 2.6 names it; the strings
// are the ones Authentication-Results and Received-SPF use.
type SPFResult string

// The SPF results (RFC 7208 section 2.6).
const (
	SPFNone      SPFResult = "none"
	SPFNeutral   SPFResult = "neutral"
	SPFPass      SPFResult = "pass"
	SPFFail      SPFResult = "fail"
	SPFSoftFail  SPFResult = "softfail"
	SPFTempError SPFResult = "temperror"
	SPFPermError SPFResult = "permerror"
)

// SPFCheck is the outcome of one SPF check_host() evaluation.
type SPFCheck struct {
	Result SPFResult
	// Identity is "mailfrom" or "helo": which identity was checked
	// (RFC 7208 section 2.3 and 2.4).
	Identity string
	// Sender is the address checked: the MAIL FROM address, or
	// postmaster@<helo> when the HELO identity was checked.
	Sender string
	// Domain is the domain whose policy was evaluated (the DMARC
	// SPF-authenticated identifier when Result is pass).
	Domain string
	// Explanation says why, for a reply text or a log line. For fail it is
	// the default explanation of RFC 7208 section 6.2 (the exp= modifier is
	// not fetched: the library ignores it).
	Explanation string
}

// CheckSPF evaluates SPF for a message from ip: the MAIL FROM identity, or,
// for the null reverse-path, the HELO identity as postmaster@helo
// (RFC 7208 section 2.4). Every DNS query goes through r.
func CheckSPF(ctx context.Context, r dnsutil.Resolver, ip netip.Addr, helo, mailFrom string) SPFCheck {
	identity := "mailfrom"
	sender := mailFrom
	if mailFrom == "" {
		identity = "helo"
		sender = "postmaster@" + helo
	}
	return checkSPF(ctx, r, ip, helo, sender, identity)
}

// CheckSPFHelo evaluates SPF for the HELO identity alone (RFC 7208 section
// 2.3), which a server may do before MAIL FROM.
func CheckSPFHelo(ctx context.Context, r dnsutil.Resolver, ip netip.Addr, helo string) SPFCheck {
	return checkSPF(ctx, r, ip, helo, "postmaster@"+helo, "helo")
}

func checkSPF(ctx context.Context, r dnsutil.Resolver, ip netip.Addr, helo, sender, identity string) SPFCheck {
	c := SPFCheck{Identity: identity, Sender: sender}
	at := strings.LastIndexByte(sender, '@')
	if at >= 0 {
		c.Domain = sender[at+1:]
	}
	if at < 0 || c.Domain == "" {
		// A local part alone: RFC 7208 section 4.3 says to use
		// postmaster@<helo>; the library does the same.
		c.Domain = helo
	}
	c.Domain = strings.ToLower(strings.TrimSuffix(c.Domain, "."))
	if !ip.IsValid() {
		c.Result = SPFPermError
		c.Explanation = "no client address"
		return c
	}
	sr := &spfResolver{r: r}
	res, err := spf.CheckHostWithSender(net.IP(ip.Unmap().AsSlice()), helo, sender,
		spf.WithContext(ctx), spf.WithResolver(sr))
	c.Result = SPFResult(res)
	if c.Result == SPFPermError && sr.syntaxErr != nil {
		err = sr.syntaxErr
	}
	c.Explanation = explain(c, ip, err)
	return c
}

// explain words an SPF result for people. RFC 7208 section 6.2 leaves the
// default explanation to the receiver.
func explain(c SPFCheck, ip netip.Addr, err error) string {
	switch c.Result {
	case SPFPass:
		return fmt.Sprintf("%s is allowed to send mail from %s", ip, c.Domain)
	case SPFFail:
		return fmt.Sprintf("%s is not allowed to send mail from %s", ip, c.Domain)
	case SPFSoftFail:
		return fmt.Sprintf("%s is probably not allowed to send mail from %s", ip, c.Domain)
	case SPFNeutral:
		return fmt.Sprintf("%s makes no assertion about %s", c.Domain, ip)
	case SPFNone:
		return fmt.Sprintf("%s publishes no SPF record", c.Domain)
	}
	if err == nil {
		return string(c.Result)
	}
	return fmt.Sprintf("%s for %s: %v", c.Result, c.Domain, err)
}

// spfResolver gives the SPF library our resolver. The library tells
// NXDOMAIN and temporary failures apart by asserting *net.DNSError, so errors
// are handed over as that type, unwrapped.
//
// It also checks every SPF record it hands over against the whole grammar
// (spfsyntax.go) and replaces a bad one by a record whose first term the
// library rejects, so that a syntax error anywhere gives permerror as RFC 7208
// section 4.6 requires, not only one the evaluation happens to reach.
type spfResolver struct {
	r         dnsutil.Resolver
	syntaxErr error // the first syntax error seen, for the explanation
}

// badRecord is an SPF record the library answers with permerror: its only
// term is neither a mechanism nor a modifier.
const badRecord = "v=spf1 posthorn:syntax-error"

func (s *spfResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	txt, err := s.r.LookupTXT(ctx, name)
	for i, t := range txt {
		if !isSPFRecord(t) {
			continue
		}
		if serr := checkSPFSyntax(t); serr != nil {
			if s.syntaxErr == nil {
				s.syntaxErr = fmt.Errorf("syntax error in the SPF record of %s: %w", name, serr)
			}
			txt[i] = badRecord
		}
	}
	return txt, dnsError(err, name)
}

func (s *spfResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	mx, err := s.r.LookupMX(ctx, name)
	return mx, dnsError(err, name)
}

func (s *spfResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	ips, err := s.r.LookupIP(ctx, host)
	out := make([]net.IPAddr, 0, len(ips))
	for _, ip := range ips {
		out = append(out, net.IPAddr{IP: net.IP(ip.Unmap().AsSlice())})
	}
	return out, dnsError(err, host)
}

func (s *spfResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Err: "bad address", Name: addr}
	}
	names, err := s.r.LookupPTR(ctx, ip)
	return names, dnsError(err, addr)
}

// dnsError returns err as a *net.DNSError: the one inside it, or a temporary
// failure naming name (an error we cannot classify must not read as
// "no such domain", which would turn a lookup failure into a non-match).
func dnsError(err error, name string) error {
	if err == nil {
		return nil
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		return de
	}
	return &net.DNSError{Err: err.Error(), Name: name, IsTemporary: true}
}
