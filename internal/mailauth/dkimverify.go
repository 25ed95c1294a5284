package mailauth

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/posthorn/posthorn/internal/dnsutil"
)

// DKIM verification (RFC 6376 section 6, RFC 8463 for Ed25519), done here
// rather than by go-msgauth for speed: the body is read once and hashed
// once per canonicalisation and length, whatever the number of signatures;
// parsed public keys are kept by their record's text; nothing is copied
// through pipes. The library signs (dkim.go) and its verifier stays the
// reference in the tests.

// sigError is why a signature did not pass, with its RFC 8601 result.
type sigError struct {
	result DKIMResult
	msg    string
}

func (e *sigError) Error() string { return e.msg }

func permErr(format string, args ...any) *sigError {
	return &sigError{DKIMPermError, fmt.Sprintf(format, args...)}
}

// dkimSig is a parsed DKIM-Signature field.
type dkimSig struct {
	raw                  []byte // the whole field, as in the header
	algo                 string // "rsa-sha256", "ed25519-sha256"
	b, bh                []byte
	domain, selector     string
	auid                 string
	headers              []string // h=, lower-case
	headerCanon, bodyCan string   // "simple" or "relaxed"
	length               int64    // l=, -1 when absent
	expires              int64    // x=, 0 when absent
	signed               int64    // t=, 0 when absent
}

// parseTags reads a tag-list (RFC 6376 section 3.2): tag names are
// case-sensitive, values have their FWS at either end removed; a tag seen
// twice is an error.
func parseTags(s string) (map[string]string, error) {
	tags := map[string]string{}
	for _, spec := range strings.Split(s, ";") {
		if strings.TrimSpace(spec) == "" {
			continue
		}
		k, v, ok := strings.Cut(spec, "=")
		if !ok {
			return nil, errors.New("malformed tag-list")
		}
		k = strings.Trim(k, " \t\r\n")
		if _, dup := tags[k]; dup {
			return nil, fmt.Errorf("tag %s twice", k)
		}
		tags[k] = strings.Trim(v, " \t\r\n")
	}
	return tags, nil
}

func parseSignature(f field) (*dkimSig, *sigError) {
	tags, err := parseTags(f.Value())
	if err != nil {
		return nil, permErr("signature: %v", err)
	}
	for _, t := range []string{"v", "a", "b", "bh", "d", "h", "s"} {
		if _, ok := tags[t]; !ok {
			return nil, permErr("signature: no %s= tag", t)
		}
	}
	if tags["v"] != "1" {
		return nil, permErr("signature: version %q", tags["v"])
	}
	s := &dkimSig{raw: f.Raw, algo: strings.ToLower(tags["a"]), domain: strings.ToLower(stripFWS(tags["d"])),
		selector: stripFWS(tags["s"]), length: -1}
	if s.b, err = base64.StdEncoding.DecodeString(stripFWS(tags["b"])); err != nil || len(s.b) == 0 {
		return nil, permErr("signature: malformed b=")
	}
	if s.bh, err = base64.StdEncoding.DecodeString(stripFWS(tags["bh"])); err != nil {
		return nil, permErr("signature: malformed bh=")
	}
	for _, h := range strings.Split(tags["h"], ":") {
		if h = strings.ToLower(strings.Trim(h, " \t\r\n")); h != "" {
			s.headers = append(s.headers, h)
		}
	}
	if len(s.headers) > 256 {
		// Each name is looked for among the fields: a hostile h= of
		// thousands would cost that many passes.
		return nil, permErr("signature: h= names %d fields", len(s.headers))
	}
	hasFrom := false
	for _, h := range s.headers {
		hasFrom = hasFrom || h == "from"
	}
	if !hasFrom {
		return nil, permErr("signature: From is not signed (RFC 6376 section 5.4)")
	}
	s.auid = "@" + s.domain
	if i, ok := tags["i"]; ok {
		s.auid = stripFWS(i)
		at := strings.LastIndexByte(s.auid, '@')
		if at < 0 {
			return nil, permErr("signature: malformed i=")
		}
		if d := strings.ToLower(s.auid[at+1:]); d != s.domain && !strings.HasSuffix(d, "."+s.domain) {
			return nil, permErr("signature: i= domain not within d= (RFC 6376 section 6.1.1)")
		}
	}
	s.headerCanon, s.bodyCan = "simple", "simple"
	if c, ok := tags["c"]; ok {
		h, b, two := strings.Cut(strings.ToLower(stripFWS(c)), "/")
		s.headerCanon = h
		if two {
			s.bodyCan = b
		}
		for _, x := range []string{s.headerCanon, s.bodyCan} {
			if x != "simple" && x != "relaxed" {
				return nil, permErr("signature: unknown canonicalization %q", x)
			}
		}
	}
	if l, ok := tags["l"]; ok {
		n, err := strconv.ParseInt(stripFWS(l), 10, 64)
		if err != nil || n < 0 {
			return nil, permErr("signature: malformed l=")
		}
		s.length = n
	}
	for _, tv := range []struct {
		tag string
		to  *int64
	}{{"t", &s.signed}, {"x", &s.expires}} {
		if v, ok := tags[tv.tag]; ok {
			n, err := strconv.ParseInt(stripFWS(v), 10, 64)
			if err != nil || n < 0 {
				return nil, permErr("signature: malformed %s=", tv.tag)
			}
			*tv.to = n
		}
	}
	if q, ok := tags["q"]; ok && !strings.Contains(strings.ToLower(q), "dns/txt") {
		return nil, permErr("signature: unknown query method %q", q)
	}
	switch s.algo {
	case "rsa-sha256", "ed25519-sha256":
	default:
		// rsa-sha1 is no longer to be trusted (RFC 8301 section 3.1).
		return nil, permErr("signature: unsupported algorithm %q", s.algo)
	}
	return s, nil
}

// keyCache keeps parsed public keys by the text of their record, so that
// a busy sender's key is parsed once.
var keyCache = struct {
	sync.Mutex
	m map[string]*dkimKey
}{m: map[string]*dkimKey{}}

const keyCacheMax = 1000

type dkimKey struct {
	keyType string // "rsa", "ed25519"
	pub     crypto.PublicKey
	hashes  []string // h=, lower-case; nil: any
	strict  bool     // t=s: i= must be exactly d=
	err     *sigError
}

func parseKeyRecord(txt string) *dkimKey {
	keyCache.Lock()
	k, ok := keyCache.m[txt]
	keyCache.Unlock()
	if ok {
		return k
	}
	k = parseKeyRecordUncached(txt)
	keyCache.Lock()
	if len(keyCache.m) >= keyCacheMax {
		clear(keyCache.m)
	}
	keyCache.m[txt] = k
	keyCache.Unlock()
	return k
}

func parseKeyRecordUncached(txt string) *dkimKey {
	tags, err := parseTags(txt)
	if err != nil {
		return &dkimKey{err: permErr("key record: %v", err)}
	}
	if v, ok := tags["v"]; ok && v != "DKIM1" {
		return &dkimKey{err: permErr("key record: version %q", v)}
	}
	k := &dkimKey{keyType: "rsa"}
	if t, ok := tags["k"]; ok {
		k.keyType = strings.ToLower(t)
	}
	if h, ok := tags["h"]; ok {
		for _, x := range strings.Split(h, ":") {
			k.hashes = append(k.hashes, strings.ToLower(strings.TrimSpace(x)))
		}
	}
	if s, ok := tags["s"]; ok {
		email := false
		for _, x := range strings.Split(s, ":") {
			x = strings.TrimSpace(x)
			email = email || x == "*" || x == "email"
		}
		if !email {
			return &dkimKey{err: permErr("key record: not for email (s=%s)", s)}
		}
	}
	if t, ok := tags["t"]; ok {
		for _, x := range strings.Split(t, ":") {
			k.strict = k.strict || strings.TrimSpace(x) == "s"
		}
	}
	p, ok := tags["p"]
	if !ok {
		return &dkimKey{err: permErr("key record: no p=")}
	}
	p = stripFWS(p)
	if p == "" {
		return &dkimKey{err: permErr("key revoked (empty p=)")}
	}
	der, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		return &dkimKey{err: permErr("key record: malformed p=")}
	}
	switch k.keyType {
	case "rsa":
		var pub *rsa.PublicKey
		if any, err := x509.ParsePKIXPublicKey(der); err == nil {
			pub, _ = any.(*rsa.PublicKey)
		} else if pk, err := x509.ParsePKCS1PublicKey(der); err == nil {
			pub = pk // a raw RSAPublicKey, as some publish (RFC 6376 errata 3017)
		}
		if pub == nil {
			return &dkimKey{err: permErr("key record: malformed RSA key")}
		}
		if pub.N.BitLen() > 8192 {
			return &dkimKey{err: permErr("key record: RSA key of %d bits is too large", pub.N.BitLen())}
		}
		if pub.N.BitLen() < 1024 {
			return &dkimKey{err: permErr("key record: RSA key of %d bits (RFC 8301 section 3.2)", pub.N.BitLen())}
		}
		k.pub = pub
	case "ed25519":
		if len(der) != ed25519.PublicKeySize {
			return &dkimKey{err: permErr("key record: malformed Ed25519 key")}
		}
		k.pub = ed25519.PublicKey(der)
	default:
		return &dkimKey{err: permErr("key record: unknown key type %q", k.keyType)}
	}
	return k
}

// bodyHasher hashes the body in one canonicalisation up to a length.
type bodyHasher struct {
	relaxed bool
	limit   int64 // -1: all
	h       hash.Hash
	n       int64
	blank   int // empty lines held back (trailing ones are not hashed)
}

func (b *bodyHasher) write(p []byte) {
	if b.limit >= 0 {
		if b.n >= b.limit {
			return
		}
		if b.n+int64(len(p)) > b.limit {
			p = p[:b.limit-b.n]
		}
	}
	b.h.Write(p)
	b.n += int64(len(p))
}

var crlf = []byte("\r\n")

// line takes one body line without its line end.
func (b *bodyHasher) line(l []byte, buf *[]byte) {
	if b.relaxed {
		// RFC 6376 section 3.4.4: whitespace at the end removed, runs
		// of it made one space.
		out := (*buf)[:0]
		sp := false
		for _, c := range l {
			if c == ' ' || c == '\t' {
				sp = true
				continue
			}
			if sp {
				out = append(out, ' ')
				sp = false
			}
			out = append(out, c)
		}
		*buf = out
		l = out
	}
	if len(l) == 0 {
		b.blank++
		return
	}
	for ; b.blank > 0; b.blank-- {
		b.write(crlf)
	}
	b.write(l)
	b.write(crlf)
}

func (b *bodyHasher) sum() []byte {
	// An empty body is CRLF in simple (RFC 6376 section 3.4.3), nothing
	// in relaxed (section 3.4.4, errata 1384).
	if b.n == 0 && !b.relaxed {
		b.write(crlf)
	}
	return b.h.Sum(nil)
}

// hashBodies reads the body once and returns the hash for each key
// "canon/limit".
func hashBodies(body io.Reader, sigs []*dkimSig) (map[string][]byte, error) {
	hashers := map[string]*bodyHasher{}
	for _, s := range sigs {
		k := s.bodyCan + "/" + strconv.FormatInt(s.length, 10)
		if hashers[k] == nil {
			hashers[k] = &bodyHasher{relaxed: s.bodyCan == "relaxed", limit: s.length, h: sha256.New()}
		}
	}
	br, ok := body.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(body, 32<<10)
	}
	var buf, pending []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			if chunk[len(chunk)-1] != '\n' {
				pending = append(pending, chunk...) // a long line, or the last without an end
			} else {
				l := chunk[:len(chunk)-1]
				if len(pending) > 0 {
					pending = append(pending, l...)
					l = pending
				}
				if n := len(l); n > 0 && l[n-1] == '\r' {
					l = l[:n-1]
				}
				for _, h := range hashers {
					h.line(l, &buf)
				}
				pending = pending[:0]
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if len(pending) > 0 {
		for _, h := range hashers {
			h.line(pending, &buf)
		}
	}
	out := map[string][]byte{}
	for k, h := range hashers {
		out[k] = h.sum()
	}
	return out, nil
}

// canonHeader writes a header field in the signature's canonicalisation.
func canonHeader(dst []byte, raw []byte, relaxed bool) []byte {
	if !relaxed {
		// As it is, but with bare LF line ends made CRLF (a message
		// handed over with LF ends, as the header would be on the wire).
		for i, c := range raw {
			if c == '\n' && (i == 0 || raw[i-1] != '\r') {
				dst = append(dst, '\r')
			}
			dst = append(dst, c)
		}
		return dst
	}
	i := bytes.IndexByte(raw, ':')
	if i < 0 {
		return append(dst, raw...)
	}
	dst = append(dst, bytes.ToLower(bytes.TrimRight(raw[:i], " \t"))...)
	dst = append(dst, ':')
	// Unfold, make every run of whitespace one space, drop it at both
	// ends of the value (RFC 6376 section 3.4.2).
	v := raw[i+1:]
	sp, started := false, false
	for _, c := range v {
		switch c {
		case '\r', '\n':
			continue
		case ' ', '\t':
			sp = true
			continue
		}
		if sp && started {
			dst = append(dst, ' ')
		}
		sp, started = false, true
		dst = append(dst, c)
	}
	return append(dst, '\r', '\n')
}

// withoutB is the signature field with the value of b= removed (RFC 6376
// section 3.7: treated as the empty string, surrounding whitespace too).
func withoutB(raw []byte) []byte {
	i := bytes.IndexByte(raw, ':')
	if i < 0 {
		return raw
	}
	out := append([]byte{}, raw[:i+1]...)
	rest := raw[i+1:]
	for len(rest) > 0 {
		j := bytes.IndexByte(rest, ';')
		spec := rest
		if j >= 0 {
			spec = rest[:j+1]
		}
		name, _, ok := bytes.Cut(spec, []byte("="))
		if ok && string(bytes.Trim(name, " \t\r\n")) == "b" {
			eq := bytes.IndexByte(spec, '=')
			out = append(out, spec[:eq+1]...)
			if j >= 0 {
				out = append(out, ';')
			} else if bytes.HasSuffix(spec, crlf) {
				out = append(out, crlf...) // the field's end stays
			}
		} else {
			out = append(out, spec...)
		}
		if j < 0 {
			break
		}
		rest = rest[j+1:]
	}
	return out
}

// headerHash hashes the signed fields, chosen from the bottom up as h=
// names them (RFC 6376 section 5.4.2), then the signature field without
// b= and without its final CRLF.
func headerHash(fields []field, s *dkimSig) []byte {
	relaxed := s.headerCanon == "relaxed"
	used := make([]bool, len(fields))
	var buf []byte
	for _, name := range s.headers {
		for i := len(fields) - 1; i >= 0; i-- {
			if !used[i] && strings.EqualFold(fields[i].Name, name) {
				used[i] = true
				buf = canonHeader(buf, fields[i].Raw, relaxed)
				break
			}
		}
	}
	buf = canonHeader(buf, withoutB(s.raw), relaxed)
	buf = bytes.TrimSuffix(buf, crlf)
	sum := sha256.Sum256(buf)
	return sum[:]
}

// verifyOne checks one signature against its key.
func verifyOne(ctx context.Context, r dnsutil.Resolver, fields []field, s *dkimSig, bodies map[string][]byte) *sigError {
	now := time.Now().Unix()
	if s.expires > 0 && (s.expires < now || s.signed > 0 && s.expires < s.signed) {
		return permErr("signature expired")
	}
	txts, err := r.LookupTXT(ctx, s.selector+"._domainkey."+s.domain)
	if err != nil {
		if dnsutil.IsNotFound(err) {
			return permErr("no key for signature")
		}
		return &sigError{DKIMTempError, "key unavailable: " + err.Error()}
	}
	if len(txts) == 0 {
		return permErr("no key for signature")
	}
	key := parseKeyRecord(txts[0])
	if key.err != nil {
		return key.err
	}
	if !strings.HasPrefix(s.algo, key.keyType+"-") {
		return permErr("key type %s does not match a=%s", key.keyType, s.algo)
	}
	if key.hashes != nil {
		ok := false
		for _, h := range key.hashes {
			ok = ok || h == "sha256"
		}
		if !ok {
			return permErr("key does not allow sha256")
		}
	}
	if key.strict && !strings.EqualFold(s.auid[strings.LastIndexByte(s.auid, '@')+1:], s.domain) {
		return permErr("i= domain must be d= exactly (key t=s)")
	}
	bh := bodies[s.bodyCan+"/"+strconv.FormatInt(s.length, 10)]
	if !bytes.Equal(bh, s.bh) {
		return &sigError{DKIMFail, "body hash did not verify"}
	}
	hh := headerHash(fields, s)
	switch pub := key.pub.(type) {
	case *rsa.PublicKey:
		if rsa.VerifyPKCS1v15(pub, crypto.SHA256, hh, s.b) != nil {
			return &sigError{DKIMFail, "signature did not verify"}
		}
	case ed25519.PublicKey:
		// RFC 8463 section 3: Ed25519 signs the SHA-256 hash.
		if !ed25519.Verify(pub, hh, s.b) {
			return &sigError{DKIMFail, "signature did not verify"}
		}
	}
	return nil
}

// verifyOwn verifies up to max signatures of the header, reading the body
// once. It returns the results in header order.
func verifyOwn(ctx context.Context, r dnsutil.Resolver, hdr []byte, body io.Reader, max int) ([]DKIMSignature, error) {
	fields := splitFields(hdr)
	var sigFields []field
	for _, f := range fields {
		if strings.EqualFold(f.Name, "DKIM-Signature") {
			sigFields = append(sigFields, f)
		}
	}
	if len(sigFields) == 0 {
		return nil, nil
	}
	tooMany := len(sigFields) > max
	if tooMany {
		sigFields = sigFields[:max]
	}
	out := make([]DKIMSignature, len(sigFields))
	parsed := make([]*dkimSig, len(sigFields))
	var errs []*sigError
	var good []*dkimSig
	for i, f := range sigFields {
		out[i] = describeSignature(f.Value())
		s, err := parseSignature(f)
		errs = append(errs, err)
		if err == nil {
			parsed[i] = s
			good = append(good, s)
		}
	}
	bodies, err := hashBodies(body, good)
	if err != nil {
		return nil, err
	}
	// The signatures are checked at once: each is a DNS lookup and a
	// public-key operation, and the message waits for all of them.
	var wg sync.WaitGroup
	for i := range out {
		if errs[i] == nil {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				errs[i] = verifyOne(ctx, r, fields, parsed[i], bodies)
			}(i)
		}
	}
	wg.Wait()
	for i := range out {
		e := errs[i]
		if e == nil {
			out[i].Result = DKIMPass
			if parsed[i].auid != "" && out[i].Identifier == "" {
				out[i].Identifier = parsed[i].auid
			}
			continue
		}
		out[i].Result, out[i].Reason = e.result, e.msg
	}
	if tooMany {
		return out, ErrTooManySignatures
	}
	return out, nil
}
