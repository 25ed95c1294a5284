package mailauth

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/posthorn/posthorn/internal/dnsutil"
)

// Verdict is what to do with a message after the checks.
type Verdict int

// The verdicts.
const (
	Accept     Verdict = iota
	Quarantine         // deliver to the recipient's Junk mailbox
	Reject             // refuse with 550 and Result.Reason
)

func (v Verdict) String() string {
	switch v {
	case Quarantine:
		return "quarantine"
	case Reject:
		return "reject"
	}
	return "accept"
}

// Input is one received message and its envelope.
type Input struct {
	ClientIP netip.Addr
	Helo     string
	MailFrom string    // the reverse-path without brackets, "" for <>
	Message  io.Reader // header and body as received (CRLF or LF lines)
}

// Checker runs SPF, DKIM and DMARC for received mail. The zero value of
// each policy field is the mildest choice.
type Checker struct {
	Resolver dnsutil.Resolver
	// MaxSignatures caps the DKIM signatures verified per message
	// (DefaultMaxSignatures when 0).
	MaxSignatures int
	// Timeout bounds the DNS work of one Check (20s when 0, RFC 7208
	// section 4.6.4's suggestion for SPF).
	Timeout time.Duration
	// RejectOnDMARCReject refuses a message failing DMARC under p=reject
	// (RFC 7489 section 6.6.2 / 10.3); otherwise it is quarantined.
	RejectOnDMARCReject bool
	// QuarantineOnDMARCQuarantine delivers a message failing DMARC under
	// p=quarantine to Junk; otherwise it is accepted.
	QuarantineOnDMARCQuarantine bool
	// SPFFailPolicy is the verdict for an SPF fail ("-all") when the From
	// domain publishes no DMARC record (RFC 7208 section 8.4).
	SPFFailPolicy Verdict
	// Pick returns a number in [0,100) for DMARC pct= sampling; nil uses
	// math/rand.
	Pick func() int
}

// Result is everything Check found, and what to do.
type Result struct {
	SPF   SPFCheck
	DKIM  []DKIMSignature
	DMARC DMARCCheck
	// Header is the message's header block as read (the DMARC and DKIM
	// input, ending with the empty line), so a caller can remove forged
	// Authentication-Results fields from it (RemoveAuthenticationResults)
	// without parsing the message again.
	Header []byte

	Verdict Verdict
	// Reason is an SMTP reply text for Reject ("5.7.1 ..."), or why the
	// message was quarantined; "" for Accept.
	Reason string
	// Err is set when the message could not be read; the results are then
	// those of the envelope only.
	Err error
}

// Check runs SPF (MAIL FROM, else HELO), DKIM and DMARC on one message and
// decides its verdict. It reads from in.Message as far as it needs (the
// whole message when it has DKIM signatures); the caller keeps its own copy
// of the message to deliver.
func (c *Checker) Check(ctx context.Context, in Input) Result {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 20 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var res Result
	// SPF needs only the envelope: it runs while the DKIM signatures are
	// verified.
	spfDone := make(chan SPFCheck, 1)
	go func() { spfDone <- CheckSPF(ctx, c.Resolver, in.ClientIP, in.Helo, in.MailFrom) }()

	hdr, body, err := readHeader(in.Message)
	if err != nil {
		res.SPF = <-spfDone
		res.Err = err
		res.DMARC = DMARCCheck{Result: DMARCNone, Applied: PolicyNone, Reason: "message unreadable"}
		res.Verdict, res.Reason = c.spfVerdict(res.SPF)
		return res
	}
	res.Header = hdr
	// Beyond the cap, signatures are ignored (ErrTooManySignatures).
	res.DKIM, _ = verifyDKIM(ctx, c.Resolver, hdr, body, c.MaxSignatures)
	res.SPF = <-spfDone

	pick := c.Pick
	if pick == nil {
		pick = func() int { return rand.IntN(100) }
	}
	res.DMARC = EvaluateDMARC(ctx, c.Resolver, fieldsNamed(splitFields(hdr), "From"), res.SPF, res.DKIM, pick)

	switch {
	case res.DMARC.Result == DMARCFail && res.DMARC.Applied == PolicyReject:
		if c.RejectOnDMARCReject {
			res.Verdict = Reject
			res.Reason = fmt.Sprintf("5.7.1 Message rejected by the DMARC policy of %s: %s", res.DMARC.RecordDomain, res.DMARC.Reason)
		} else {
			res.Verdict = Quarantine
			res.Reason = "DMARC p=reject of " + res.DMARC.RecordDomain + ": " + res.DMARC.Reason
		}
	case res.DMARC.Result == DMARCFail && res.DMARC.Applied == PolicyQuarantine:
		if c.QuarantineOnDMARCQuarantine {
			res.Verdict = Quarantine
			res.Reason = "DMARC p=quarantine of " + res.DMARC.RecordDomain + ": " + res.DMARC.Reason
		}
	case res.DMARC.Record == nil && res.DMARC.Result != DMARCTempError:
		// No DMARC policy: the SPF result alone decides (RFC 7208 8.4).
		res.Verdict, res.Reason = c.spfVerdict(res.SPF)
	}
	return res
}

func (c *Checker) spfVerdict(s SPFCheck) (Verdict, string) {
	if s.Result != SPFFail {
		return Accept, ""
	}
	switch c.SPFFailPolicy {
	case Reject:
		// RFC 7208 section 8.4: 550 5.7.1 with an explanation.
		return Reject, fmt.Sprintf("5.7.1 SPF %s check failed: %s", s.Identity, s.Explanation)
	case Quarantine:
		return Quarantine, "SPF fail: " + s.Explanation
	}
	return Accept, ""
}
