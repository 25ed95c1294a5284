// Package dnsrecords says which DNS records a posthorn domain needs — MX, SPF
// (RFC 7208), the DKIM keys (RFC 6376 section 3.6, RFC 8463), DMARC (RFC
// 7489) and the SRV records mail programs configure themselves from (RFC
// 6186, RFC 8314 section 5.1) — and checks what DNS publishes against them.
// `posthorn dns-records [--check]` prints both.
package dnsrecords

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/posthorn/posthorn/internal/dnsutil"
	"github.com/posthorn/posthorn/internal/mailauth"
)

// Record is one record to publish.
type Record struct {
	Name  string // fully qualified, with the final dot
	Type  string // "MX", "TXT", "SRV", "CNAME"
	Value string // as in a zone file, TXT without quotes
	// What says what it is for ("SPF", "DKIM ed25519", "DMARC", ...).
	What string
}

// Domain describes one mail domain of this server.
type Domain struct {
	Name     string
	Hostname string // the MX and the server's HELO name
	// Keys are the DKIM records of the domain's signing keys (none: no
	// DKIM records).
	Keys []mailauth.KeyRecord
	// Ports of the services for SRV records; 0: the service is not offered
	// (published with the target "." of RFC 6186 section 3.4).
	Submission, IMAPS, POP3S int
	// HostRecords adds the SPF record of the hostname itself (the HELO
	// identity, RFC 7208 section 2.3), once for the whole server.
	HostRecords bool
	// Autoconfig adds autoconfig.DOMAIN pointing at the server, where
	// mail programs fetch their settings (the webmail listener serves
	// them, internal/autoconfig).
	Autoconfig bool
}

func fqdn(s string) string { return strings.TrimSuffix(strings.ToLower(s), ".") + "." }

// Records returns what d needs, in the order a zone file lists them.
func Records(d Domain) []Record {
	dom, host := fqdn(d.Name), fqdn(d.Hostname)
	out := []Record{
		{dom, "MX", "10 " + host, "MX"},
		// Only the MX host sends the domain's mail; anything else fails
		// (RFC 7208 section 5.4 "mx", 5.1 "all").
		{dom, "TXT", "v=spf1 mx -all", "SPF"},
	}
	if d.HostRecords {
		out = append(out, Record{host, "TXT", "v=spf1 a -all", "SPF for the HELO name"})
	}
	for _, k := range d.Keys {
		what := "DKIM"
		if strings.Contains(k.Value, "k=ed25519") {
			what += " ed25519"
		} else {
			what += " rsa"
		}
		out = append(out, Record{fqdn(k.Name), "TXT", k.Value, what})
	}
	// quarantine rather than reject to start with: a forwarder that breaks
	// the signatures costs a Junk folder, not a bounce (RFC 7489 section 6.3).
	out = append(out, Record{"_dmarc." + dom, "TXT", "v=DMARC1; p=quarantine; adkim=r; aspf=r", "DMARC"})
	for _, s := range []struct {
		svc  string
		port int
	}{{"_submission._tcp.", d.Submission}, {"_imaps._tcp.", d.IMAPS}, {"_pop3s._tcp.", d.POP3S}} {
		v := "0 0 0 ." // RFC 6186 section 3.4: not offered
		if s.port > 0 {
			v = "0 1 " + strconv.Itoa(s.port) + " " + host
		}
		out = append(out, Record{s.svc + dom, "SRV", v, "SRV " + strings.Trim(strings.Split(s.svc, ".")[0], "_")})
	}
	if d.Autoconfig {
		out = append(out, Record{"autoconfig." + dom, "CNAME", host, "autoconfig (Thunderbird and others)"})
	}
	return out
}

// Zone formats records as zone-file lines; TXT values longer than 255
// octets are split into several strings (RFC 1035 section 3.3.14; RFC 6376
// section 3.6.2.2 joins them).
func Zone(rs []Record) string {
	var b strings.Builder
	for _, r := range rs {
		v := r.Value
		if r.Type == "TXT" {
			v = quoteTXT(v)
		}
		fmt.Fprintf(&b, "%-40s 3600 IN %-4s %s\n", r.Name, r.Type, v)
	}
	return b.String()
}

func quoteTXT(v string) string {
	var parts []string
	for len(v) > 255 {
		parts = append(parts, strconv.Quote(v[:255]))
		v = v[255:]
	}
	parts = append(parts, strconv.Quote(v))
	if len(parts) == 1 {
		return parts[0]
	}
	return "( " + strings.Join(parts, "\n\t") + " )"
}

// Status is how a published record compares with the expected one.
type Status string

const (
	OK        Status = "ok"
	Missing   Status = "missing"
	Wrong     Status = "wrong"
	Unchecked Status = "unchecked" // DNS failed: could not tell
)

// Finding is the check of one record.
type Finding struct {
	Record Record
	Status Status
	Detail string // what was found instead, or why it could not be told
}

// Checker looks records up.
type Checker struct {
	Resolver dnsutil.Resolver
	// SRV looks SRV records up (net.Resolver.LookupSRV's form); nil leaves
	// SRV records unchecked.
	SRV func(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
}

// Check compares what DNS publishes with rs. Records that may differ and
// still be right are judged by what they do: an SPF record must let the
// hostname's addresses send (check_host gives pass), a DMARC record must
// parse, a DKIM record must publish the same key.
func (c *Checker) Check(ctx context.Context, d Domain, rs []Record) []Finding {
	out := make([]Finding, 0, len(rs))
	for _, r := range rs {
		st, detail := c.check(ctx, d, r)
		out = append(out, Finding{r, st, detail})
	}
	return out
}

func lookupFailed(err error) (Status, string) {
	if dnsutil.IsNotFound(err) {
		return Missing, "no such record"
	}
	return Unchecked, err.Error()
}

func (c *Checker) check(ctx context.Context, d Domain, r Record) (Status, string) {
	name := strings.TrimSuffix(r.Name, ".")
	switch r.Type {
	case "MX":
		mxs, err := c.Resolver.LookupMX(ctx, name)
		if err != nil {
			return lookupFailed(err)
		}
		var hosts []string
		for _, mx := range mxs {
			h := fqdn(mx.Host)
			if h == fqdn(d.Hostname) {
				return OK, ""
			}
			hosts = append(hosts, h)
		}
		if len(hosts) == 0 {
			return Missing, "no MX"
		}
		return Wrong, "MX is " + strings.Join(hosts, ", ")
	case "CNAME":
		// What matters is that the name reaches the server: a CNAME or
		// address records of its own, as long as the addresses agree.
		got, err := c.Resolver.LookupIP(ctx, name)
		if err != nil {
			return lookupFailed(err)
		}
		want, err := c.Resolver.LookupIP(ctx, strings.TrimSuffix(r.Value, "."))
		if err != nil {
			return Unchecked, "the server's own name does not resolve: " + err.Error()
		}
		for _, a := range got {
			if slices.Contains(want, a) {
				return OK, ""
			}
		}
		return Wrong, fmt.Sprintf("resolves to %v, the server is %v", got, want)
	case "SRV":
		if c.SRV == nil {
			return Unchecked, "no SRV lookups"
		}
		parts := strings.SplitN(name, ".", 3)
		if len(parts) < 3 {
			return Unchecked, "bad name"
		}
		_, srvs, err := c.SRV(ctx, strings.TrimPrefix(parts[0], "_"), strings.TrimPrefix(parts[1], "_"), parts[2])
		if err != nil {
			return lookupFailed(err)
		}
		f := strings.Fields(r.Value)
		for _, s := range srvs {
			if strconv.Itoa(int(s.Port)) == f[2] && fqdn(s.Target) == fqdn(f[3]) {
				return OK, ""
			}
		}
		var got []string
		for _, s := range srvs {
			got = append(got, fmt.Sprintf("%d %s", s.Port, fqdn(s.Target)))
		}
		return Wrong, "published: " + strings.Join(got, ", ")
	}
	txts, err := c.Resolver.LookupTXT(ctx, name)
	if err != nil {
		return lookupFailed(err)
	}
	switch {
	case strings.HasPrefix(r.Value, "v=spf1"):
		return c.checkSPF(ctx, name, r, txts)
	case strings.HasPrefix(r.Value, "v=DMARC1"):
		var found []string
		for _, t := range txts {
			if strings.HasPrefix(strings.TrimSpace(t), "v=DMARC1") {
				found = append(found, t)
			}
		}
		switch {
		case len(found) == 0:
			return Missing, "no v=DMARC1 record"
		case len(found) > 1:
			// RFC 7489 section 6.6.3: several records are none at all.
			return Wrong, "more than one DMARC record"
		}
		if _, err := mailauth.ParseDMARC(found[0]); err != nil {
			return Wrong, err.Error()
		}
		return OK, ""
	case strings.HasPrefix(r.Value, "v=DKIM1"):
		want := tag(r.Value, "p")
		for _, t := range txts {
			if tag(t, "p") == want {
				return OK, ""
			}
		}
		if len(txts) == 0 {
			return Missing, "no record"
		}
		return Wrong, "a different key is published"
	}
	if slices.Contains(txts, r.Value) {
		return OK, ""
	}
	return Wrong, strings.Join(txts, " | ")
}

// checkSPF: exactly one v=spf1 record (RFC 7208 section 4.5), which passes
// the MX host's addresses.
func (c *Checker) checkSPF(ctx context.Context, name string, r Record, txts []string) (Status, string) {
	var found []string
	for _, t := range txts {
		if t == "v=spf1" || strings.HasPrefix(strings.ToLower(t), "v=spf1 ") {
			found = append(found, t)
		}
	}
	switch {
	case len(found) == 0:
		return Missing, "no v=spf1 record"
	case len(found) > 1:
		return Wrong, "more than one SPF record (RFC 7208 section 4.5: permerror)"
	}
	host := strings.TrimSuffix(r.Name, ".")
	if r.What == "SPF" {
		host = "" // the domain's record: checked with the MX host's addresses
	}
	var ips []netip.Addr
	if host == "" {
		mxs, err := c.Resolver.LookupMX(ctx, name)
		if err == nil {
			for _, mx := range mxs {
				a, _ := c.Resolver.LookupIP(ctx, strings.TrimSuffix(mx.Host, "."))
				ips = append(ips, a...)
			}
		}
	} else {
		ips, _ = c.Resolver.LookupIP(ctx, host)
	}
	if len(ips) == 0 {
		return OK, "published (no address to test it with)"
	}
	for _, ip := range ips {
		res := mailauth.CheckSPF(ctx, c.Resolver, ip, name, "postmaster@"+name)
		if res.Result != mailauth.SPFPass {
			return Wrong, fmt.Sprintf("%s gives %s for %s", found[0], res.Result, ip)
		}
	}
	return OK, ""
}

// tag returns the value of tag t in a tag=value list, spaces removed.
func tag(rec, t string) string {
	for _, f := range strings.Split(rec, ";") {
		k, v, ok := strings.Cut(f, "=")
		if ok && strings.TrimSpace(k) == t {
			return strings.Join(strings.Fields(v), "")
		}
	}
	return ""
}
