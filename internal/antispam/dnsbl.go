package antispam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/posthorn/posthorn/internal/dnsutil"
	"github.com/posthorn/posthorn/internal/policy"
)

// DefaultDNSBLTimeout bounds a DNSBL Lookup when DNSBL.Timeout is zero.
const DefaultDNSBLTimeout = 5 * time.Second

// DNSBL looks client addresses up in DNS blocklists (RFC 5782).
type DNSBL struct {
	Resolver dnsutil.Resolver
	// Timeout bounds one Lookup over all its zones, which are asked at once;
	// zero means DefaultDNSBLTimeout.
	Timeout time.Duration
}

// Listing is what one zone said of an address. A zone that could not say
// (a temporary DNS failure, a timeout, only error-code or out-of-range
// answers) counts as not listing it: Err says why, for the log.
type Listing struct {
	Zone    string
	Listed  bool
	Answers []netip.Addr // the 127.0.0.0/8 answers that list the address
	Text    string       // the zone's TXT reason, cleaned; "" when it gave none
	Err     error
}

// maxTXT bounds the reason kept from a TXT record (a reply line is at most
// 512 octets, RFC 5321 section 4.5.3.1.5).
const maxTXT = 200

// QueryName is the name asked of zone for ip (RFC 5782 section 2.1 for IPv4:
// the octets reversed, 192.0.2.99 in bl.example is 99.2.0.192.bl.example;
// section 2.4 for IPv6: the 32 nibbles reversed), as a fully qualified name
// with its final dot so that no search domain is tried. An IPv4-mapped IPv6
// address is asked as IPv4. It returns "" for an invalid address or an empty
// zone.
func QueryName(ip netip.Addr, zone string) string {
	zone = strings.Trim(zone, ".")
	if !ip.IsValid() || zone == "" {
		return ""
	}
	ip = ip.Unmap()
	var b strings.Builder
	if ip.Is4() {
		a := ip.As4()
		for i := 3; i >= 0; i-- {
			b.WriteString(strconv.Itoa(int(a[i])))
			b.WriteByte('.')
		}
	} else {
		const hex = "0123456789abcdef"
		a := ip.As16()
		for i := 15; i >= 0; i-- {
			b.WriteByte(hex[a[i]&0xf])
			b.WriteByte('.')
			b.WriteByte(hex[a[i]>>4])
			b.WriteByte('.')
		}
	}
	b.WriteString(strings.ToLower(zone))
	b.WriteByte('.')
	return b.String()
}

var (
	loopbackNet  = netip.MustParsePrefix("127.0.0.0/8")
	errorCodeNet = netip.MustParsePrefix("127.255.255.0/24")
)

// Lookup asks every zone at once whether ip is listed, and gives the answers
// in the order of zones. A listed address's TXT record (RFC 5782 section 2.1)
// is fetched for the reason; a failure there leaves Text empty but the
// listing stands.
//
// Only answers in 127.0.0.0/8 list an address (RFC 5782 section 2.1;
// 127.0.0.1 too, although section 5 reserves it for tests). Answers in
// 127.255.255.0/24 are Spamhaus' error codes (.252 a malformed query, .254 a
// query through a public resolver, .255 too many queries), and an answer
// outside 127.0.0.0/8 is a zone answering every name (an expired list domain
// parked with a wildcard): neither lists anyone, and Err reports it.
func (d *DNSBL) Lookup(ctx context.Context, ip netip.Addr, zones []string) []Listing {
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = DefaultDNSBLTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := make([]Listing, len(zones))
	var wg sync.WaitGroup
	for i, zone := range zones {
		out[i].Zone = strings.ToLower(strings.Trim(zone, "."))
		wg.Go(func() { d.lookupOne(ctx, ip, &out[i]) })
	}
	wg.Wait()
	return out
}

func (d *DNSBL) lookupOne(ctx context.Context, ip netip.Addr, l *Listing) {
	name := QueryName(ip, l.Zone)
	if name == "" {
		l.Err = fmt.Errorf("dnsbl %q: no query for address %v", l.Zone, ip)
		return
	}
	addrs, err := d.Resolver.LookupIP(ctx, name)
	if err != nil {
		if !dnsutil.IsNotFound(err) {
			l.Err = fmt.Errorf("dnsbl %s: %w", l.Zone, err)
		}
		return
	}
	var odd []string
	for _, a := range addrs {
		a = a.Unmap()
		switch {
		case !a.Is4():
			// An AAAA answer: RFC 5782 lists with A records only.
			continue
		case errorCodeNet.Contains(a):
			odd = append(odd, a.String()+" (an error code)")
		case !loopbackNet.Contains(a):
			odd = append(odd, a.String()+" (outside 127.0.0.0/8: a misconfigured list?)")
		default:
			l.Answers = append(l.Answers, a)
		}
	}
	if len(l.Answers) == 0 {
		if len(odd) > 0 {
			l.Err = fmt.Errorf("dnsbl %s: ignored answer %s", l.Zone, strings.Join(odd, ", "))
		}
		return
	}
	l.Listed = true
	txts, err := d.Resolver.LookupTXT(ctx, name)
	if err != nil {
		return
	}
	l.Text = clean(strings.Join(txts, " "), maxTXT)
}

// FirstListed returns the first listing that lists the address.
func FirstListed(ls []Listing) (Listing, bool) {
	for _, l := range ls {
		if l.Listed {
			return l, true
		}
	}
	return Listing{}, false
}

// ListingErrors joins the errors of the zones that could not say, for a log line;
// nil when every zone answered.
func ListingErrors(ls []Listing) error {
	var errs []error
	for _, l := range ls {
		if l.Err != nil {
			errs = append(errs, l.Err)
		}
	}
	return errors.Join(errs...)
}

// DNSBLDecision refuses a client that a zone lists, with 554 5.7.1 (RFC 5321
// section 3.1: 554 in place of the greeting; RFC 3463 X.7.1, delivery not
// authorised) naming the zone and giving its reason; it accepts one no zone
// lists, saying in Reason which zones could not answer.
func DNSBLDecision(ip netip.Addr, ls []Listing) policy.Decision {
	l, ok := FirstListed(ls)
	if !ok {
		if err := ListingErrors(ls); err != nil {
			return accept("dnsbl: not listed; " + clean(err.Error(), 400))
		}
		return accept("")
	}
	text := "Service unavailable; client [" + ip.Unmap().String() + "] blocked using " + l.Zone
	if l.Text != "" {
		text += ": " + l.Text
	}
	answers := make([]string, len(l.Answers))
	for i, a := range l.Answers {
		answers[i] = a.String()
	}
	return refuse(554, "5.7.1", text, "dnsbl "+l.Zone+" lists "+ip.Unmap().String()+" ("+strings.Join(answers, ",")+")")
}
