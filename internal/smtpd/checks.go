package smtpd

import (
	"context"
	"io"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/antispam"
	"github.com/posthorn/posthorn/internal/mailauth"
	"github.com/posthorn/posthorn/internal/maps"
	"github.com/posthorn/posthorn/internal/policy"
)

// Checks are the defences of a server taking mail from the Internet
// (internal/antispam) and the authentication of what it receives
// (internal/mailauth). A nil field checks nothing.
//
// None applies to a trusted client: 127.0.0.1 and ::1, a client the access
// table lets relay (Connect: RELAY), a logged-in user — and, for the checks
// at connect, a Connect: OK client, as Sendmail's check_relay skips its
// DNSBLs for one. They run in Sendmail's order around the access table:
//
//	connect: connection rate, access Connect:, DNSBL, FCrDNS, early talker
//	HELO:    HELO sanity
//	MAIL:    access From:, message rate
//	RCPT:    access To: and the relay rules, the recipient, greylisting
//	DATA:    SPF, DKIM, DMARC (an Authentication-Results field; 550 or Junk)
type Checks struct {
	ConnLimit  *antispam.Limiter // connections per client address
	MsgLimit   *antispam.Limiter // messages (MAIL commands) per client address
	DNSBL      *antispam.DNSBL
	DNSBLZones []string
	// EarlyTalkerWait holds the greeting back; 0 does not.
	EarlyTalkerWait time.Duration
	HELO            *antispam.HELOCheck
	// RequireFCrDNS refuses clients without forward-confirmed reverse DNS
	// (Server.DNS must be set for the lookup).
	RequireFCrDNS bool
	Greylist      *antispam.Greylist
	// Auth runs SPF, DKIM and DMARC after DATA.
	Auth *mailauth.Checker
}

// trusted reports whether the client is exempt from the checks: loopback,
// or permitted to relay by the access table.
func (c *conn) trusted() bool {
	return policy.IsLoopback(c.ip) || c.connVerd.Verdict == policy.Relay || c.account != "" || !c.ip.IsValid()
}

// checks returns the server's checks for this client, nil when it is trusted.
func (c *conn) checks() *Checks {
	if c.srv.Checks == nil || c.trusted() {
		return nil
	}
	return c.srv.Checks
}

// refuse logs a refusal once, with its reason, and returns its reply.
func (c *conn) refuse(what string, d policy.Decision, attrs ...any) Reply {
	args := append([]any{"client_ip", c.ip.String(), "reason", d.Reason}, attrs...)
	c.srv.Log.Info("smtp "+what+" rejected", args...)
	return decisionReply(d)
}

// checkConnect runs the checks at connect, after the access table's
// Connect: entries. It returns false when the client was refused (the reply
// is sent; the caller ends the session).
func (c *conn) checkConnect() bool {
	ck := c.srv.Checks
	if ck == nil || !c.ip.IsValid() || policy.IsLoopback(c.ip) {
		return true
	}
	// The connection rate counts every client but loopback: a RELAY
	// network can flood too; its limit is just as high.
	if ck.ConnLimit != nil {
		if d := ck.ConnLimit.Check(c.ip); d.Verdict == policy.Reject {
			// RFC 5321 section 3.8: 421 and close.
			c.refuse("connection", d)
			c.send(Reply{421, d.Enhanced, d.Text})
			c.flush()
			return false
		}
	}
	if c.trusted() || c.connectOK() {
		return true
	}
	if ck.DNSBL != nil && len(ck.DNSBLZones) > 0 {
		ls := ck.DNSBL.Lookup(context.Background(), c.ip, ck.DNSBLZones)
		if err := antispam.ListingErrors(ls); err != nil {
			c.srv.Log.Warn("smtp dnsbl lookup failed", "client_ip", c.ip.String(), "err", err)
		}
		if d := antispam.DNSBLDecision(c.ip, ls); d.Verdict == policy.Reject {
			c.rejectAtConnect(d)
			return false
		}
	}
	if ck.RequireFCrDNS {
		st := map[policy.PTRStatus]antispam.RDNSStatus{
			policy.PTROK: antispam.RDNSOK, policy.PTRTemp: antispam.RDNSTemp,
		}[c.client.PTR]
		if st == 0 {
			st = antispam.RDNSFail
		}
		if d := (antispam.RDNS{Status: st, Name: c.client.Hostname}).Decision(c.ip); d.Verdict == policy.Reject {
			c.rejectAtConnect(d)
			return false
		}
	}
	if ck.EarlyTalkerWait > 0 && !c.tls {
		et, err := antispam.EarlyTalker(c.raw, ck.EarlyTalkerWait)
		if err != nil {
			return false // the client left
		}
		if et.Talked {
			d := et.Decision(c.ip)
			c.refuse("connection", d)
			c.send(Reply{d.Code, d.Enhanced, d.Text})
			c.flush()
			return false
		}
	}
	return true
}

// connectOK reports whether the access table says OK for the client at
// connect (not only "no entry").
func (c *conn) connectOK() bool {
	r, ok := c.srv.Tables().Access.LookupConnect(c.ip, c.client.Hostname)
	return ok && r.Action == maps.ActionOK
}

// rejectAtConnect refuses the session as an access REJECT does.
func (c *conn) rejectAtConnect(d policy.Decision) {
	c.refuse("connection", d, "client_name", c.client.Hostname)
	c.connVerd = d
	c.rejectedSession()
}

// checkHelo judges the HELO/EHLO argument; ok false means refused (the
// reply is sent).
func (c *conn) checkHelo(helo string) bool {
	ck := c.checks()
	if ck == nil || ck.HELO == nil {
		return true
	}
	if d := ck.HELO.Check(helo, c.ip); d.Verdict == policy.Reject {
		c.send(c.refuse("helo", d, "helo", sanitize(helo, 255)))
		return false
	}
	return true
}

// checkMessageRate counts a MAIL command against the client's message rate.
func (c *conn) checkMessageRate(from string) bool {
	ck := c.checks()
	if ck == nil || ck.MsgLimit == nil {
		return true
	}
	if d := ck.MsgLimit.Check(c.ip); d.Verdict == policy.Reject {
		c.send(c.refuse("sender", d, "from", from))
		return false
	}
	return true
}

// checkGreylist judges one recipient's triplet.
func (c *conn) checkGreylist(tx *transaction, rcpt string) bool {
	ck := c.checks()
	if ck == nil || ck.Greylist == nil {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	from := ""
	if !tx.null {
		from = tx.from.String()
	}
	d, err := ck.Greylist.Check(ctx, c.ip, from, rcpt)
	if err != nil {
		c.srv.Log.Warn("smtp greylist failed; accepted", "client_ip", c.ip.String(), "err", err)
	}
	if d.Verdict == policy.Reject {
		tx.rejected++
		c.send(c.refuse("recipient", d, "queue_id", tx.id, "from", from, "rcpt", rcpt))
		return false
	}
	return true
}

// authResult is what the checks after DATA decided.
type authResult struct {
	header     string // the Authentication-Results field, "" when not checked
	quarantine bool
	refused    *Reply
}

// checkAuth runs SPF, DKIM and DMARC on a received message (RFC 7208, RFC
// 6376, RFC 7489) and renders the Authentication-Results field (RFC 8601)
// with our hostname as authserv-id.
func (c *conn) checkAuth(tx *transaction) authResult {
	ck := c.checks()
	if ck == nil || ck.Auth == nil {
		return authResult{}
	}
	from := ""
	if !tx.null {
		from = tx.from.String()
	}
	res := ck.Auth.Check(context.Background(), mailauth.Input{
		ClientIP: c.ip,
		Helo:     c.helo,
		MailFrom: from,
		Message:  io.NewSectionReader(&tx.sp, tx.rpLen, tx.sp.Size()-tx.rpLen),
	})
	out := authResult{header: res.AuthenticationResults(c.srv.Hostname)}
	switch res.Verdict {
	case mailauth.Reject:
		code, text, _ := strings.Cut(res.Reason, " ")
		r := Reply{550, "5.7.1", res.Reason}
		if len(code) == 5 && code[0] == '5' && code[1] == '.' {
			r = Reply{550, code, text}
		}
		c.refuse("message", policy.Decision{Reason: "authentication: " + res.Reason}, "queue_id", tx.id, "from", from,
			"spf", string(res.SPF.Result), "dmarc", string(res.DMARC.Result))
		out.refused = &r
	case mailauth.Quarantine:
		out.quarantine = true
		c.srv.Log.Info("smtp message quarantined", "client_ip", c.ip.String(), "queue_id", tx.id, "from", from,
			"reason", res.Reason, "spf", string(res.SPF.Result), "dmarc", string(res.DMARC.Result))
	}
	return out
}
