package antispam

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/posthorn/posthorn/internal/dnsutil"
	"github.com/posthorn/posthorn/internal/policy"
)

// RDNSStatus is how a forward-confirmed reverse DNS check went.
type RDNSStatus int

const (
	RDNSOK   RDNSStatus = iota + 1 // a PTR name whose addresses include the client's
	RDNSFail                       // no PTR name, or none leads back to the client
	RDNSTemp                       // a lookup failed temporarily, and no name was confirmed
)

func (s RDNSStatus) String() string {
	switch s {
	case RDNSOK:
		return "ok"
	case RDNSFail:
		return "fail"
	case RDNSTemp:
		return "temp"
	}
	return "?"
}

// RDNS is the outcome of ReverseDNS.
type RDNS struct {
	Status RDNSStatus
	// Name is the confirmed name when Status is RDNSOK; otherwise the
	// first PTR name, if there was one (for the reply and the log).
	Name string
	Err  error // the temporary failure, for RDNSTemp
}

// MaxPTRNames bounds the PTR names whose addresses ReverseDNS looks up: a
// hostile reverse zone could list thousands.
const MaxPTRNames = 10

// ReverseDNS checks the client's forward-confirmed reverse DNS (FCrDNS; RFC
// 8601 section 3 calls it "iprev"): the PTR names of ip, then the A/AAAA
// addresses of each (at most MaxPTRNames, asked at once); ok when one of them
// includes ip. timeout bounds the whole check. A forward lookup that fails
// temporarily makes the result RDNSTemp only if no other name confirms.
func ReverseDNS(ctx context.Context, r dnsutil.Resolver, ip netip.Addr, timeout time.Duration) RDNS {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ip = ip.Unmap()
	names, err := r.LookupPTR(ctx, ip)
	if len(names) == 0 {
		if err == nil || dnsutil.IsNotFound(err) {
			return RDNS{Status: RDNSFail}
		}
		return RDNS{Status: RDNSTemp, Err: fmt.Errorf("reverse dns of %s: %w", ip, err)}
	}
	if len(names) > MaxPTRNames {
		names = names[:MaxPTRNames]
	}
	found := make([]bool, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			addrs, err := r.LookupIP(ctx, name)
			if err != nil {
				if !dnsutil.IsNotFound(err) {
					errs[i] = err
				}
				return
			}
			for _, a := range addrs {
				if a.Unmap() == ip {
					found[i] = true
					return
				}
			}
		})
	}
	wg.Wait()
	for i, ok := range found {
		if ok {
			return RDNS{Status: RDNSOK, Name: names[i]}
		}
	}
	for i, err := range errs {
		if err != nil {
			return RDNS{Status: RDNSTemp, Name: names[0], Err: fmt.Errorf("forward dns of %s: %w", names[i], err)}
		}
	}
	return RDNS{Status: RDNSFail, Name: names[0]}
}

// Decision turns the outcome into a decision for a server that requires
// FCrDNS: RFC 7372 section 3.3's X.7.25 "reverse DNS validation failed", 550
// for a failure and 450 for a temporary one.
func (r RDNS) Decision(ip netip.Addr) policy.Decision {
	ip = ip.Unmap()
	name := clean(r.Name, 255)
	switch r.Status {
	case RDNSOK:
		return accept("fcrdns " + ip.String() + " is " + name)
	case RDNSTemp:
		reason := "fcrdns " + ip.String() + ": temporary failure"
		if r.Err != nil {
			reason += ": " + clean(r.Err.Error(), 300)
		}
		return refuse(450, "4.7.25", "Cannot check the reverse DNS of ["+ip.String()+"] now, try again later", reason)
	}
	if name == "" {
		return refuse(550, "5.7.25", "Reverse DNS required: ["+ip.String()+"] has no name",
			"fcrdns "+ip.String()+": no PTR")
	}
	return refuse(550, "5.7.25", "Reverse DNS required: "+name+" does not resolve to ["+ip.String()+"]",
		"fcrdns "+ip.String()+": PTR "+name+" not confirmed")
}
