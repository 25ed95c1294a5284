// Package dnsutil is posthorn's one way to ask DNS: MX, A/AAAA, TXT and PTR
// lookups behind an interface, sent either to the system's resolver or, with
// `[dns] resolver`, to one server (tests point it at a fake built with dnstest).
package dnsutil

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Resolver answers the queries posthorn makes.
type Resolver interface {
	LookupPTR(ctx context.Context, ip netip.Addr) ([]string, error)
	LookupIP(ctx context.Context, host string) ([]netip.Addr, error)
	LookupMX(ctx context.Context, domain string) ([]*net.MX, error)
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// New returns a Resolver. With server "" it uses the system's configuration;
// otherwise every query goes to server ("host:port") over UDP, and over TCP when
// an answer is truncated.
func New(server string) Resolver {
	r := &net.Resolver{PreferGo: true}
	if server != "" {
		r.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, server)
		}
	}
	return &netResolver{r: r}
}

type netResolver struct{ r *net.Resolver }

func (n *netResolver) LookupPTR(ctx context.Context, ip netip.Addr) ([]string, error) {
	names, err := n.r.LookupAddr(ctx, ip.Unmap().String())
	for i := range names {
		names[i] = normalise(names[i])
	}
	return names, err
}

func (n *netResolver) LookupIP(ctx context.Context, host string) ([]netip.Addr, error) {
	return n.r.LookupNetIP(ctx, "ip", host)
}

func (n *netResolver) LookupMX(ctx context.Context, domain string) ([]*net.MX, error) {
	return n.r.LookupMX(ctx, domain)
}

func (n *netResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	return n.r.LookupTXT(ctx, name)
}

func normalise(name string) string { return strings.ToLower(strings.TrimSuffix(name, ".")) }

// IsNotFound reports whether err says the name does not exist (as opposed to a
// temporary failure).
func IsNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// PTRResult says how a client's reverse lookup went.
type PTRResult int

const (
	PTRConfirmed PTRResult = iota + 1 // a name whose addresses include the client's
	PTRNone                           // no name (NXDOMAIN, or no PTR record)
	PTRForged                         // names, none of which leads back to the address
	PTRTempFail                       // the lookup failed temporarily
)

// LookupClient looks up a client's forward-confirmed reverse DNS name: a PTR
// name of ip whose own addresses include ip. The name is "" unless the result
// is PTRConfirmed.
func LookupClient(ctx context.Context, r Resolver, ip netip.Addr, timeout time.Duration) (string, PTRResult) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	names, err := r.LookupPTR(ctx, ip)
	if len(names) == 0 {
		if err == nil || IsNotFound(err) {
			return "", PTRNone
		}
		return "", PTRTempFail
	}
	ip = ip.Unmap()
	temp := false
	for i, name := range names {
		if i >= 10 { // bound the work a hostile PTR set can cause
			break
		}
		addrs, err := r.LookupIP(ctx, name)
		if err != nil {
			temp = temp || !IsNotFound(err)
			continue
		}
		for _, a := range addrs {
			if a.Unmap() == ip {
				return name, PTRConfirmed
			}
		}
	}
	if temp {
		return "", PTRTempFail
	}
	return "", PTRForged
}

// VerifiedHostname returns the client's forward-confirmed reverse DNS name, or
// "" when there is none; the error is for a temporary failure.
func VerifiedHostname(ctx context.Context, r Resolver, ip netip.Addr, timeout time.Duration) (string, error) {
	name, res := LookupClient(ctx, r, ip, timeout)
	if res == PTRTempFail {
		return "", errors.New("dnsutil: reverse lookup failed temporarily")
	}
	return name, nil
}
