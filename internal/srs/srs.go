// Package srs implements the Sender Rewriting Scheme (Shevek, "Sender
// Rewriting Scheme", 2004) in the form that libsrs2 and postsrsd produce and
// accept, so that addresses made here can be reversed by them and the other
// way round.
//
// When posthorn forwards a message to a remote address (an alias or a
// virtusertable entry), the envelope sender is rewritten into an address at
// one of our domains, so that SPF at the destination checks our host, not the
// original sender's. A bounce to that address comes back to us and Reverse
// recovers where to send it on. The rewritten address carries an HMAC so that
// we are not an open relay for forged bounces, and a day stamp so that it
// expires.
//
// The two forms, with '=' as the separator after the tag (postsrsd's default):
//
//	SRS0=HHHH=TT=orig-domain=orig-local@srs-domain
//	SRS1=HHHH=first-host==HHHH=TT=orig-domain=orig-local@srs-domain
//
// HHHH is the first four characters of the standard base64 encoding of
// HMAC-SHA1(secret, lower-case(TT + orig-domain + orig-local)) for SRS0, and
// of HMAC-SHA1(secret, lower-case(first-host + rest)) for SRS1, where rest is
// everything after "SRS0" of the first host's address, separator included.
// The parts are concatenated without separators and lower-cased byte by byte
// in ASCII only, as libsrs2 does in the C locale. TT is the day number
// (Unix time / 86400) modulo 1024 written as two base32 (RFC 4648 alphabet)
// characters.
package srs

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Errors returned by Forward and Reverse; test with errors.Is.
var (
	// ErrNotSRS: the address is not an SRS address (Reverse).
	ErrNotSRS = errors.New("srs: not an SRS address")
	// ErrMalformed: the address is an SRS address with parts missing or
	// invalid (Reverse), or the sender cannot be rewritten (Forward).
	ErrMalformed = errors.New("srs: malformed address")
	// ErrBadHash: the hash does not match under any of the secrets.
	ErrBadHash = errors.New("srs: hash invalid")
	// ErrExpired: the hash is good but the time stamp is older than MaxAge
	// (or lies in the future).
	ErrExpired = errors.New("srs: time stamp out of date")
	// ErrTooLong: the input, or the rewritten address, is longer than
	// MaxAddress.
	ErrTooLong = errors.New("srs: address too long")
	// ErrConfig: the Rewriter has no secret, an empty secret, or (Forward)
	// no Domain.
	ErrConfig = errors.New("srs: rewriter not configured")
)

// MaxAddress is the longest address Forward accepts or produces and Reverse
// accepts: RFC 5321 section 4.5.3.1.3 limits a path to 256 octets including
// the angle brackets.
const MaxAddress = 254

// DefaultMaxAge is the validity of a rewritten address when Rewriter.MaxAge
// is zero, libsrs2's and postsrsd's default.
const DefaultMaxAge = 21 * 24 * time.Hour

const (
	hashLen = 4 // libsrs2's default hashlength and hashmin

	// The time stamp: one day precision, two base32 characters, so it wraps
	// every 1024 days (libsrs2 SRS_TIME_*).
	dayLen    = 24 * time.Hour
	timeBits  = 5
	timeSlots = 1 << (2 * timeBits)
	timeChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
)

// Rewriter rewrites senders for forwarding and reverses the rewriting for
// bounces. Its fields are read, never written, so one Rewriter may be used by
// many goroutines once set up.
type Rewriter struct {
	// Secrets are the HMAC keys. The first signs; all verify, so a new
	// secret can be put first while addresses made with the old one are
	// still in flight. To share addresses with postsrsd, use the lines of
	// its secrets file (without the line ends) in the same order.
	Secrets [][]byte
	// Domain is the SRS domain: rewritten addresses are local@Domain, and
	// it must route back to us.
	Domain string
	// MaxAge is how long a rewritten address may be reversed; zero means
	// DefaultMaxAge. It is counted in whole days, as the stamp is.
	MaxAge time.Duration
	// Now returns the current time; nil means time.Now. For tests.
	Now func() time.Time
}

// IsSRS reports whether local (a local part, or a whole address) begins like
// an SRS address: "SRS0" or "SRS1" in any case followed by one of the
// separators '=', '+' or '-' (libsrs2's SRS_IS_SRS_ADDRESS).
func IsSRS(local string) bool {
	return tag(local) != 0
}

// tag returns '0' or '1' for an SRS0 or SRS1 local part, else 0.
func tag(s string) byte {
	if len(s) < 5 || !strings.EqualFold(s[:3], "SRS") {
		return 0
	}
	if s[3] != '0' && s[3] != '1' {
		return 0
	}
	if !isSeparator(s[4]) {
		return 0
	}
	return s[3]
}

// isSeparator: libsrs2 writes '=' by default and accepts '+' and '-' after
// the tag; the fields after it are always separated by '='.
func isSeparator(c byte) bool {
	return c == '=' || c == '+' || c == '-'
}

// Forward rewrites the envelope sender "local@domain" for a message that we
// forward. A sender already at r.Domain is returned unchanged. A sender that
// is itself an SRS0 address becomes an SRS1 address naming its host; a sender
// that is an SRS1 address keeps its first host and gets our hash and domain
// (the SRS paper, section "SRS1"). Anything else becomes an SRS0 address.
//
// The address is taken and returned in its unquoted form: the domain is
// after the last '@'. Callers that put the result on the wire quote the local
// part if it needs quoting (addr.Address.String does). The null sender has
// nothing to rewrite and must not be passed.
func (r *Rewriter) Forward(sender string) (string, error) {
	if err := r.checkConfig(true); err != nil {
		return "", err
	}
	if len(sender) > MaxAddress {
		return "", fmt.Errorf("%w: sender is %d octets", ErrTooLong, len(sender))
	}
	if hasControl(sender) {
		return "", fmt.Errorf("%w: control character in sender", ErrMalformed)
	}
	at := strings.LastIndexByte(sender, '@')
	if at < 0 {
		return "", fmt.Errorf("%w: sender has no domain", ErrMalformed)
	}
	local, host := sender[:at], sender[at+1:]
	if local == "" || host == "" {
		return "", fmt.Errorf("%w: sender has an empty local part or domain", ErrMalformed)
	}
	if strings.IndexByte(host, '=') >= 0 {
		// '=' separates the fields; a domain holding one could not be
		// reversed (and is no domain name anyway).
		return "", fmt.Errorf("%w: '=' in sender domain", ErrMalformed)
	}
	if strings.EqualFold(strings.TrimSuffix(host, "."), strings.TrimSuffix(r.Domain, ".")) {
		// Already ours: SPF at the destination checks us anyway.
		return sender, nil
	}

	var out string
	switch tag(local) {
	case '1':
		// SRS1 from another forwarder: keep the first host and the
		// opaque rest, re-sign them under our secret (libsrs2
		// srs_compile_guarded). The old hash is not ours to check.
		if firstHost, rest, ok := splitSRS1(local[5:]); ok {
			out = "SRS1=" + r.hash(0, firstHost, rest) + "=" + firstHost + "=" + rest + "@" + r.Domain
			break
		}
		// A sender that only looks like SRS1 is wrapped as an
		// ordinary one: its bounces still come back to it.
		out = r.srs0(local, host)
	case '0':
		// SRS0 from the host that made it: the rest keeps its
		// separator, so Reverse can give back "SRS0"+rest@host.
		rest := local[4:]
		if !validRest(rest) {
			out = r.srs0(local, host)
			break
		}
		out = "SRS1=" + r.hash(0, host, rest) + "=" + host + "=" + rest + "@" + r.Domain
	default:
		out = r.srs0(local, host)
	}
	if len(out) > MaxAddress {
		return "", fmt.Errorf("%w: rewritten sender would be %d octets", ErrTooLong, len(out))
	}
	return out, nil
}

// srs0 builds SRS0=HHHH=TT=host=local@Domain.
func (r *Rewriter) srs0(local, host string) string {
	stamp := stampFor(r.now())
	return "SRS0=" + r.hash(0, stamp, host, local) + "=" + stamp + "=" + host + "=" + local + "@" + r.Domain
}

// splitSRS1 splits what follows "SRS1=" into the first host and the rest,
// dropping the old hash: HASH=host=rest. The rest begins with the separator
// that followed SRS0 at the first host.
func splitSRS1(s string) (host, rest string, ok bool) {
	i := strings.IndexByte(s, '=')
	if i < 0 {
		return "", "", false
	}
	s = s[i+1:]
	j := strings.IndexByte(s, '=')
	if j <= 0 || !validRest(s[j+1:]) {
		return "", "", false
	}
	return s[:j], s[j+1:], true
}

// Reverse turns an SRS address back into the address a bounce to it is sent
// on to: for SRS0 the original sender, for SRS1 the SRS0 address at the first
// host (which that host reverses in turn). The domain after the last '@' is
// not looked at, as in libsrs2: the caller has already decided that the
// address is ours, and the hash covers everything that matters.
//
// Errors: ErrNotSRS for an address that is not SRS at all, ErrMalformed for
// missing or bad parts, ErrBadHash, ErrExpired (checked after the hash, so it
// is only reported for addresses we really made), ErrTooLong, ErrConfig.
func (r *Rewriter) Reverse(address string) (string, error) {
	local := address
	if at := strings.LastIndexByte(address, '@'); at >= 0 {
		local = address[:at]
	}
	t := tag(local)
	if t == 0 {
		return "", ErrNotSRS
	}
	if err := r.checkConfig(false); err != nil {
		return "", err
	}
	if len(address) > MaxAddress {
		return "", fmt.Errorf("%w: %d octets", ErrTooLong, len(address))
	}
	if hasControl(address) {
		return "", fmt.Errorf("%w: control character", ErrMalformed)
	}
	if t == '1' {
		return r.reverse1(local[5:])
	}
	return r.reverse0(local[5:])
}

// reverse0 handles what follows "SRS0=": HHHH=TT=host=local. The local part
// is the rest and may itself contain '='.
func (r *Rewriter) reverse0(s string) (string, error) {
	fields := strings.SplitN(s, "=", 4)
	if len(fields) < 4 {
		return "", fmt.Errorf("%w: SRS0 address needs hash, stamp, host and user", ErrMalformed)
	}
	hash, stamp, host, user := fields[0], fields[1], fields[2], fields[3]
	switch {
	case hash == "":
		return "", fmt.Errorf("%w: no hash in SRS0 address", ErrMalformed)
	case host == "":
		return "", fmt.Errorf("%w: no host in SRS0 address", ErrMalformed)
	case user == "":
		return "", fmt.Errorf("%w: no user in SRS0 address", ErrMalformed)
	}
	then, ok := parseStamp(stamp)
	if !ok {
		return "", fmt.Errorf("%w: bad time stamp in SRS0 address", ErrMalformed)
	}
	if !r.checkHash(hash, stamp, host, user) {
		return "", ErrBadHash
	}
	if !r.fresh(then) {
		return "", ErrExpired
	}
	return user + "@" + host, nil
}

// reverse1 handles what follows "SRS1=": HHHH=host=rest, rest beginning with
// the first host's separator. SRS1 carries no stamp of its own: the SRS0
// part's stamp is the first host's to check.
func (r *Rewriter) reverse1(s string) (string, error) {
	fields := strings.SplitN(s, "=", 3)
	if len(fields) < 3 {
		return "", fmt.Errorf("%w: SRS1 address needs hash, host and user", ErrMalformed)
	}
	hash, host, rest := fields[0], fields[1], fields[2]
	switch {
	case hash == "":
		return "", fmt.Errorf("%w: no hash in SRS1 address", ErrMalformed)
	case host == "":
		return "", fmt.Errorf("%w: no host in SRS1 address", ErrMalformed)
	case !validRest(rest):
		return "", fmt.Errorf("%w: no user in SRS1 address", ErrMalformed)
	}
	if !r.checkHash(hash, host, rest) {
		return "", ErrBadHash
	}
	return "SRS0" + rest + "@" + host, nil
}

// validRest reports whether rest can follow the first host in an SRS1
// address: the separator of the SRS0 address and something after it, so that
// "SRS0"+rest is again an SRS0 address.
func validRest(rest string) bool {
	return len(rest) >= 2 && isSeparator(rest[0])
}

func (r *Rewriter) checkConfig(forward bool) error {
	if len(r.Secrets) == 0 {
		return fmt.Errorf("%w: no secret", ErrConfig)
	}
	for _, s := range r.Secrets {
		if len(s) == 0 {
			return fmt.Errorf("%w: empty secret", ErrConfig)
		}
	}
	if forward && r.Domain == "" {
		return fmt.Errorf("%w: no SRS domain", ErrConfig)
	}
	return nil
}

func (r *Rewriter) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// hash returns the four-character hash of parts under secret i.
func (r *Rewriter) hash(i int, parts ...string) string {
	m := hmac.New(sha1.New, r.Secrets[i])
	for _, p := range parts {
		m.Write(lowerASCII(p))
	}
	// Base64 of the first three bytes of the MAC gives the four characters
	// libsrs2's hand-rolled encoder produces.
	return base64.StdEncoding.EncodeToString(m.Sum(nil)[:3])[:hashLen]
}

// checkHash compares got with the hash under every secret, in constant time
// and case-insensitively: libsrs2 uses strncasecmp because some MTAs change
// the case of local parts. Like libsrs2 it accepts a longer hash and compares
// its first hashLen characters.
func (r *Rewriter) checkHash(got string, parts ...string) bool {
	if len(got) < hashLen {
		return false
	}
	g := lowerASCII(got[:hashLen])
	ok := 0
	for i := range r.Secrets {
		ok |= subtle.ConstantTimeCompare(g, lowerASCII(r.hash(i, parts...)))
	}
	return ok == 1
}

// lowerASCII folds A-Z only, as C tolower does in the C locale; other bytes,
// UTF-8 included, pass through.
func lowerASCII(s string) []byte {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return b
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// day returns the day number of t, counted from the Unix epoch.
func day(t time.Time) int64 {
	u := t.Unix()
	d := u / int64(dayLen/time.Second)
	if u%int64(dayLen/time.Second) < 0 {
		d--
	}
	return d
}

// slot returns day(t) modulo timeSlots, never negative.
func slot(t time.Time) int {
	s := int(day(t) % timeSlots)
	if s < 0 {
		s += timeSlots
	}
	return s
}

// stampFor encodes the day of t as two base32 characters.
func stampFor(t time.Time) string {
	s := slot(t)
	return string([]byte{timeChars[s>>timeBits], timeChars[s&(1<<timeBits-1)]})
}

// parseStamp decodes a two-character stamp, in either case.
func parseStamp(s string) (int, bool) {
	if len(s) != 2 {
		return 0, false
	}
	v := 0
	for i := 0; i < 2; i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		k := strings.IndexByte(timeChars, c)
		if k < 0 {
			return 0, false
		}
		v = v<<timeBits | k
	}
	return v, true
}

// fresh reports whether a stamp made on slot then is at most MaxAge days old.
// As in libsrs2, a stamp from "the future" is taken as almost 1024 days old.
func (r *Rewriter) fresh(then int) bool {
	maxAge := r.MaxAge
	if maxAge <= 0 {
		maxAge = DefaultMaxAge
	}
	maxDays := int(maxAge / dayLen)
	now := slot(r.now())
	for now < then {
		now += timeSlots
	}
	return now <= then+maxDays
}
