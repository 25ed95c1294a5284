package server

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/posthorn/posthorn/internal/antispam"
	"github.com/posthorn/posthorn/internal/config"
	"github.com/posthorn/posthorn/internal/deliver"
	"github.com/posthorn/posthorn/internal/dnscache"
	"github.com/posthorn/posthorn/internal/dnsutil"
	"github.com/posthorn/posthorn/internal/mailauth"
	"github.com/posthorn/posthorn/internal/maps"
	"github.com/posthorn/posthorn/internal/smtpd"
	"github.com/posthorn/posthorn/internal/store"
)

// keyRing is the DKIM signing keys of [dkim], or nil when signing is off.
func keyRing(cfg *config.Config) *deliver.KeyRing {
	if !cfg.DKIM.Signing() {
		return nil
	}
	return &deliver.KeyRing{Dir: cfg.DKIM.KeysDir}
}

// newChecks makes the port-25 server's checks from [authcheck] and
// [antispam]. The greylist file is opened here (after run_as); the caller
// closes it.
func newChecks(cfg *config.Config, r dnsutil.Resolver, tables *maps.Tables) (*smtpd.Checks, error) {
	a, s := cfg.AuthCheck, cfg.Antispam
	// The checks ask the same few names again and again (the senders' SPF,
	// DKIM and DMARC records, the DNSBLs): a minute's memory of them.
	r = dnscache.New(r)
	ck := &smtpd.Checks{EarlyTalkerWait: s.EarlyTalkerWait.D(), RequireFCrDNS: s.RequireFCrDNS}
	var err error
	if ck.ConnLimit, err = antispam.NewLimiter(antispam.LimiterOptions{PerMinute: float64(s.ConnectionsPerMinute), What: "connections"}); err != nil {
		return nil, fmt.Errorf("[antispam] connections_per_minute: %w", err)
	}
	if ck.MsgLimit, err = antispam.NewLimiter(antispam.LimiterOptions{PerMinute: float64(s.MessagesPerMinute), What: "messages"}); err != nil {
		return nil, fmt.Errorf("[antispam] messages_per_minute: %w", err)
	}
	if len(s.DNSBL) > 0 {
		ck.DNSBL = &antispam.DNSBL{Resolver: r, Timeout: s.DNSBLTimeout.D()}
		ck.DNSBLZones = s.DNSBL
	}
	if s.HELOChecks {
		names := append([]string{cfg.Hostname}, tables.LocalHostNames.Names()...)
		hc := antispam.DefaultHELOCheck(names, listenAddrs(cfg.SMTP.Listen))
		// Only 127.0.0.1 and ::1 are this host (ARCHITECTURE.md): the rest
		// of 127.0.0.0/8 plays outside clients.
		hc.Local = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128")}
		ck.HELO = &hc
	}
	if s.Greylist {
		g, err := antispam.OpenGreylist(s.GreylistFile, antispam.GreylistOptions{
			Delay:         s.GreylistDelay.D(),
			Expiry:        s.GreylistExpiry.D(),
			PassLifetime:  s.GreylistPassLifetime.D(),
			AutoWhitelist: s.GreylistAutoWhitelist,
		})
		if err != nil {
			return nil, fmt.Errorf("[antispam] greylist_file: %w", err)
		}
		ck.Greylist = g
	}
	if a.On() {
		spfFail := map[string]mailauth.Verdict{
			config.ActionReject: mailauth.Reject, config.ActionQuarantine: mailauth.Quarantine, config.ActionAccept: mailauth.Accept,
		}[a.SPFFail]
		ck.Auth = &mailauth.Checker{
			Resolver:                    r,
			MaxSignatures:               a.MaxSignatures,
			Timeout:                     a.Timeout.D(),
			RejectOnDMARCReject:         a.DMARCReject == config.ActionReject,
			QuarantineOnDMARCQuarantine: a.DMARCQuarantine == config.ActionQuarantine,
			SPFFailPolicy:               spfFail,
		}
	}
	return ck, nil
}

// listenAddrs are the specific addresses the SMTP server listens on (for the
// HELO check: a client claiming one is not us).
func listenAddrs(ls config.Listeners) []netip.Addr {
	var out []netip.Addr
	for _, l := range ls {
		host, _, err := net.SplitHostPort(l)
		if err != nil {
			continue
		}
		if ip, err := netip.ParseAddr(host); err == nil && !ip.IsUnspecified() {
			out = append(out, ip)
		}
	}
	return out
}

// signing marks everything it delivers for DKIM signing: the webmail's
// messages, all written by logged-in users.
type signing struct{ next smtpd.Deliverer }

func (d signing) Deliver(ctx context.Context, env *deliver.Envelope, body store.Body) (*deliver.Result, error) {
	env.Sign = true
	return d.next.Deliver(ctx, env, body)
}
