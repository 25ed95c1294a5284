package mailauth

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"

	"github.com/posthorn/posthorn/internal/dnsutil"
)

// Policy is a DMARC policy (RFC 7489 section 6.3, p= and sp=).
type Policy string

// The DMARC policies.
const (
	PolicyNone       Policy = "none"
	PolicyQuarantine Policy = "quarantine"
	PolicyReject     Policy = "reject"
)

// AlignMode is adkim= or aspf= (RFC 7489 section 3.1).
type AlignMode byte

// The alignment modes.
const (
	AlignRelaxed AlignMode = 'r'
	AlignStrict  AlignMode = 's'
)

// DMARCRecord is a parsed DMARC record. Reporting tags (rua, ruf, rf, ri,
// fo) are checked for syntax where a bad value makes the record invalid,
// and otherwise ignored: posthorn sends no reports.
type DMARCRecord struct {
	Policy          Policy
	SubdomainPolicy Policy // sp=, or p= when absent
	ADKIM, ASPF     AlignMode
	Pct             int // 0-100
}

// Errors of ParseDMARC, by kind.
var (
	ErrDMARCEmpty      = errors.New("dmarc: empty record")
	ErrDMARCBadVersion = errors.New("dmarc: record does not start with v=DMARC1")
	ErrDMARCBadValue   = errors.New("dmarc: bad tag value")
	ErrDMARCNoPolicy   = errors.New("dmarc: no p= tag")
)

// ParseDMARC parses a DMARC record (RFC 7489 section 6.4): "v=DMARC1" first,
// then p= (required), and the optional tags. Unknown tags are ignored
// (section 6.3).
func ParseDMARC(txt string) (*DMARCRecord, error) {
	if strings.TrimSpace(txt) == "" {
		return nil, ErrDMARCEmpty
	}
	tags := strings.Split(txt, ";")
	if k, v, _ := strings.Cut(tags[0], "="); strings.TrimSpace(k) != "v" || strings.TrimSpace(v) != "DMARC1" {
		return nil, ErrDMARCBadVersion
	}
	rec := &DMARCRecord{ADKIM: AlignRelaxed, ASPF: AlignRelaxed, Pct: 100}
	seen := map[string]bool{}
	for _, tag := range tags[1:] {
		if strings.TrimSpace(tag) == "" {
			continue
		}
		k, v, ok := strings.Cut(tag, "=")
		k, v = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
		if !ok || k == "" {
			return nil, fmt.Errorf("%w: %q", ErrDMARCBadValue, tag)
		}
		if seen[k] {
			return nil, fmt.Errorf("%w: %s= given twice", ErrDMARCBadValue, k)
		}
		seen[k] = true
		bad := func() error { return fmt.Errorf("%w: %s=%s", ErrDMARCBadValue, k, v) }
		switch k {
		case "p", "sp":
			p := Policy(strings.ToLower(v))
			if p != PolicyNone && p != PolicyQuarantine && p != PolicyReject {
				return nil, bad()
			}
			if k == "p" {
				rec.Policy = p
			} else {
				rec.SubdomainPolicy = p
			}
		case "adkim", "aspf":
			var m AlignMode
			switch strings.ToLower(v) {
			case "r":
				m = AlignRelaxed
			case "s":
				m = AlignStrict
			default:
				return nil, bad()
			}
			if k == "adkim" {
				rec.ADKIM = m
			} else {
				rec.ASPF = m
			}
		case "pct":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 100 {
				return nil, bad()
			}
			rec.Pct = n
		case "ri":
			if n, err := strconv.ParseUint(v, 10, 32); err != nil || n == 0 {
				return nil, bad()
			}
		case "rf":
			// A colon-separated list of report formats; "afrf" is the
			// only one defined (section 6.3).
			for _, f := range strings.Split(v, ":") {
				if !strings.EqualFold(strings.TrimSpace(f), "afrf") {
					return nil, bad()
				}
			}
		case "fo":
			for _, o := range strings.Split(v, ":") {
				if o = strings.TrimSpace(o); o != "0" && o != "1" && o != "d" && o != "s" {
					return nil, bad()
				}
			}
		}
	}
	if rec.Policy == "" {
		return nil, ErrDMARCNoPolicy
	}
	if rec.SubdomainPolicy == "" {
		rec.SubdomainPolicy = rec.Policy
	}
	return rec, nil
}

// normDomain lower-cases a domain and drops surrounding dots.
func normDomain(d string) string {
	return strings.ToLower(strings.Trim(strings.TrimSpace(d), "."))
}

// OrganizationalDomain returns the organisational domain of d (RFC 7489
// section 3.2): its public suffix from the Public Suffix List
// (golang.org/x/net/publicsuffix's compiled-in copy) plus one label. It
// returns "" for a public suffix itself and for malformed names. Names in
// Unicode are compared in their A-label form and returned in the form given.
func OrganizationalDomain(d string) string {
	d = strings.ToLower(strings.TrimSpace(d))
	if d == "" || strings.HasPrefix(d, ".") || strings.Contains(d, "..") {
		return ""
	}
	d = strings.TrimSuffix(d, ".")
	ascii, err := idna.Lookup.ToASCII(d)
	if err != nil {
		return ""
	}
	org, err := publicsuffix.EffectiveTLDPlusOne(ascii)
	if err != nil {
		return ""
	}
	if ascii != d {
		if u, err := idna.Lookup.ToUnicode(org); err == nil {
			return u
		}
	}
	return org
}

// Aligned reports whether an authenticated domain is aligned with the From
// domain (RFC 7489 section 3.1): equal in strict mode, of the same
// organisational domain in relaxed mode.
func Aligned(fromDomain, authDomain string, mode AlignMode) bool {
	f, a := normDomain(fromDomain), normDomain(authDomain)
	if f == "" || a == "" {
		return false
	}
	if f == a {
		return true
	}
	if mode == AlignStrict {
		return false
	}
	of, oa := orgOrSelf(f), orgOrSelf(a)
	return of != "" && of == oa
}

// orgOrSelf is the organisational domain, or the name itself when it has
// none (a name that is a public suffix is its own organisation).
func orgOrSelf(d string) string {
	if o := OrganizationalDomain(d); o != "" {
		return o
	}
	return d
}

// FromDomains returns the domain of every address in a From field value,
// in order. It is lenient the way deployed DMARC implementations are
// (OpenDMARC's finddomain cases): display names, comments and quoted strings
// are skipped, and both <angle-addr> and bare addr-spec are accepted.
func FromDomains(value string) []string {
	// Blank out quoted strings and comments, which may hold '@', ',' and
	// '<' that are not part of any address (RFC 5322 section 3.2).
	b := []byte(value)
	depth, quoted := 0, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case quoted:
			if c == '\\' && i+1 < len(b) {
				b[i], b[i+1] = ' ', ' '
				i++
				continue
			}
			if c == '"' {
				quoted = false
			}
			b[i] = ' '
		case depth > 0:
			if c == '\\' && i+1 < len(b) {
				b[i], b[i+1] = ' ', ' '
				i++
				continue
			}
			if c == '(' {
				depth++
			} else if c == ')' {
				depth--
			}
			b[i] = ' '
		case c == '"':
			quoted = true
			b[i] = ' '
		case c == '(':
			depth++
			b[i] = ' '
		}
	}
	var out []string
	for _, mbox := range strings.Split(string(b), ",") {
		at := strings.LastIndexByte(mbox, '@')
		if at < 0 {
			continue
		}
		d := mbox[at+1:]
		if end := strings.IndexAny(d, "> \t\r\n;<"); end >= 0 {
			d = d[:end]
		}
		if d = normDomain(d); d != "" {
			out = append(out, d)
		}
	}
	return out
}

// DMARCResultValue is a DMARC result as RFC 7489 section 11.2 names it.
type DMARCResultValue string

// The DMARC results.
const (
	DMARCNone      DMARCResultValue = "none"
	DMARCPass      DMARCResultValue = "pass"
	DMARCFail      DMARCResultValue = "fail"
	DMARCTempError DMARCResultValue = "temperror"
	DMARCPermError DMARCResultValue = "permerror"
)

// DMARCCheck is the outcome of DMARC evaluation for one message.
type DMARCCheck struct {
	Result DMARCResultValue
	// FromDomain is the RFC5322.From domain ("" when there was not
	// exactly one).
	FromDomain string
	// RecordDomain is where the record was found: the From domain or its
	// organisational domain.
	RecordDomain string
	Record       *DMARCRecord
	// Policy is the policy the record asks for this message (sp= for a
	// subdomain found through the organisational domain), before pct.
	Policy Policy
	// Applied is the policy to apply after pct= (RFC 7489 section 6.6.4):
	// none unless Result is fail.
	Applied Policy
	Reason  string
}

// lookupDMARC finds the DMARC record for domain (RFC 7489 section 6.6.3):
// at _dmarc.<domain>, else at _dmarc.<organisational domain>. It returns
// the record and where it was found, a parse error of the record found, or a
// lookup error (temporary).
func lookupDMARC(ctx context.Context, r dnsutil.Resolver, domain string) (rec *DMARCRecord, at string, parseErr, lookupErr error) {
	names := []string{domain}
	if org := OrganizationalDomain(domain); org != "" && org != domain {
		names = append(names, org)
	}
	for _, d := range names {
		txts, err := r.LookupTXT(ctx, "_dmarc."+d)
		if err != nil && !dnsutil.IsNotFound(err) {
			return nil, d, nil, fmt.Errorf("dmarc: looking up _dmarc.%s: %w", d, err)
		}
		var recs []string
		for _, t := range txts {
			// Records not starting with v=DMARC1 are discarded (step 4).
			if k, v, _ := strings.Cut(strings.SplitN(t, ";", 2)[0], "="); strings.TrimSpace(k) == "v" && strings.TrimSpace(v) == "DMARC1" {
				recs = append(recs, t)
			}
		}
		switch len(recs) {
		case 0:
			continue
		case 1:
			rec, err := ParseDMARC(recs[0])
			return rec, d, err, nil
		default:
			// Several records: DMARC processing is not applied (step 5).
			return nil, d, nil, nil
		}
	}
	return nil, "", nil, nil
}

// EvaluateDMARC applies DMARC (RFC 7489 section 6.6) to a message whose
// From field(s) had the given values, using the SPF and DKIM results. pick
// returns a number in [0,100) for pct= sampling (nil means always apply).
func EvaluateDMARC(ctx context.Context, r dnsutil.Resolver, fromValues []string, spfRes SPFCheck, dkimRes []DKIMSignature, pick func() int) DMARCCheck {
	domains := map[string]bool{}
	var order []string
	for _, v := range fromValues {
		for _, d := range FromDomains(v) {
			if !domains[d] {
				domains[d] = true
				order = append(order, d)
			}
		}
	}
	if len(order) == 0 {
		return DMARCCheck{Result: DMARCNone, Applied: PolicyNone, Reason: "no From domain"}
	}
	if len(order) > 1 {
		// Several From domains cannot all be authenticated by one
		// identifier; RFC 7489 section 6.6.1 allows applying each
		// domain's policy. A fail of any applies its policy; otherwise
		// the message gets no DMARC pass.
		worst := DMARCCheck{Result: DMARCPermError, Applied: PolicyNone, Reason: fmt.Sprintf("%d From domains", len(order))}
		for _, d := range order {
			c := evaluateDomain(ctx, r, d, spfRes, dkimRes, pick)
			if c.Result == DMARCFail && policyRank(c.Applied) >= policyRank(worst.Applied) {
				worst = c
				worst.Reason = fmt.Sprintf("%d From domains; %s", len(order), c.Reason)
			}
		}
		if worst.Result == DMARCFail {
			worst.FromDomain = ""
		}
		return worst
	}
	return evaluateDomain(ctx, r, order[0], spfRes, dkimRes, pick)
}

func policyRank(p Policy) int {
	switch p {
	case PolicyReject:
		return 2
	case PolicyQuarantine:
		return 1
	}
	return 0
}

func evaluateDomain(ctx context.Context, r dnsutil.Resolver, from string, spfRes SPFCheck, dkimRes []DKIMSignature, pick func() int) DMARCCheck {
	c := DMARCCheck{FromDomain: from, Applied: PolicyNone}
	rec, at, parseErr, lookupErr := lookupDMARC(ctx, r, from)
	c.RecordDomain = at
	switch {
	case lookupErr != nil:
		c.Result, c.Reason = DMARCTempError, lookupErr.Error()
		return c
	case parseErr != nil:
		// RFC 7489 section 11.2: a syntactically bad record is permerror.
		c.Result, c.Reason = DMARCPermError, parseErr.Error()
		return c
	case rec == nil:
		c.Result, c.Reason = DMARCNone, "no DMARC record for "+from
		return c
	}
	c.Record = rec
	c.Policy = rec.Policy
	if at != from {
		c.Policy = rec.SubdomainPolicy
	}
	// Identifier alignment (section 3.1): a passing SPF check of an
	// aligned domain, or a passing DKIM signature of an aligned d=.
	if spfRes.Result == SPFPass && Aligned(from, spfRes.Domain, rec.ASPF) {
		c.Result, c.Reason = DMARCPass, "SPF "+spfRes.Domain+" aligned"
		return c
	}
	for _, s := range dkimRes {
		if s.Result == DKIMPass && Aligned(from, s.Domain, rec.ADKIM) {
			c.Result, c.Reason = DMARCPass, "DKIM "+s.Domain+" aligned"
			return c
		}
	}
	c.Result = DMARCFail
	c.Reason = "no aligned SPF or DKIM pass for " + from
	c.Applied = c.Policy
	// pct= (section 6.6.4): outside the sample, the next milder policy.
	if rec.Pct < 100 && pick != nil && pick() >= rec.Pct {
		switch c.Policy {
		case PolicyReject:
			c.Applied = PolicyQuarantine
		case PolicyQuarantine:
			c.Applied = PolicyNone
		}
		c.Reason += fmt.Sprintf(" (outside pct=%d)", rec.Pct)
	}
	return c
}
