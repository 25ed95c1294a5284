package deliver

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/posthorn/posthorn/internal/mailauth"
	"github.com/posthorn/posthorn/internal/store"
)

// KeyRing holds the DKIM signers of the local domains, read from Dir
// (<Dir>/<domain>/<selector>.<algorithm>.pem, mailauth.GenerateKeys's
// layout). A domain's keys are read again after TTL, so that a key added
// for rotation (a new selector) signs without a restart.
type KeyRing struct {
	Dir string
	// TTL is how long a domain's keys are kept before being read again
	// (one minute when 0).
	TTL time.Duration

	mu    sync.Mutex
	cache map[string]ringEntry
}

type ringEntry struct {
	signer *mailauth.Signer // nil: the domain has no keys
	at     time.Time
}

// maxRingEntries bounds the cache: the domains asked for are the local
// ones, but nothing stops a user from writing any From: domain.
const maxRingEntries = 1000

// Signer returns the signer of domain, or nil when it has no keys.
func (k *KeyRing) Signer(domain string) (*mailauth.Signer, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	if domain == "" || strings.ContainsAny(domain, "/\\") || strings.HasPrefix(domain, ".") {
		return nil, nil
	}
	ttl := k.TTL
	if ttl == 0 {
		ttl = time.Minute
	}
	now := time.Now()
	k.mu.Lock()
	e, ok := k.cache[domain]
	k.mu.Unlock()
	if ok && now.Sub(e.at) < ttl {
		return e.signer, nil
	}
	s, err := mailauth.LoadSigner(k.Dir, domain)
	if errors.Is(err, os.ErrNotExist) || isNoKeys(err) {
		// No keys: not an error, the mail goes unsigned.
		s, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	if k.cache == nil || len(k.cache) >= maxRingEntries {
		k.cache = map[string]ringEntry{}
	}
	k.cache[domain] = ringEntry{s, now}
	k.mu.Unlock()
	return s, nil
}

// SignerFor picks the signer for a message From: domain: the domain's own
// keys, else those of its organisational domain (still aligned under DMARC's
// relaxed mode, RFC 7489 section 3.1.1), else nil.
func (k *KeyRing) SignerFor(fromDomain string) (*mailauth.Signer, error) {
	s, err := k.Signer(fromDomain)
	if s != nil || err != nil {
		return s, err
	}
	if org := mailauth.OrganizationalDomain(fromDomain); org != "" && !strings.EqualFold(org, fromDomain) {
		return k.Signer(org)
	}
	return nil, nil
}

// sign adds DKIM-Signature fields to body when its From: domain has keys:
// after a leading Return-Path: field (which the SMTP client strips before
// sending, so it must stay first), before everything else. A message that
// cannot be signed goes out unsigned, with a log line: refusing it would
// lose mail over a key problem.
func (d *Deliverer) sign(env *Envelope, body store.Body) store.Body {
	dom := headerFromDomain(body)
	if dom == "" {
		return body
	}
	s, err := d.DKIM.SignerFor(dom)
	if err != nil {
		d.log().Warn("dkim: keys not readable; sent unsigned", "queue_id", env.ID, "domain", dom, "err", err)
		return body
	}
	if s == nil {
		return body
	}
	sig, err := s.Sign(io.NewSectionReader(body, 0, body.Size()))
	if err != nil {
		d.log().Warn("dkim: not signed", "queue_id", env.ID, "domain", dom, "err", err)
		return body
	}
	return Insert(body, returnPathEnd(body), []byte(sig))
}

// isNoKeys reports whether LoadSigner's error says the domain's directory
// holds no key (an empty directory left by an aborted keygen).
func isNoKeys(err error) bool {
	return err != nil && strings.Contains(err.Error(), "no DKIM keys")
}

// maxFromScan bounds how much of a header is read to find From:.
const maxFromScan = 256 << 10

// headerFromDomain returns the domain of the single From: field's single
// address, or "" (no From:, several, or not readable).
func headerFromDomain(body store.Body) string {
	br := bufio.NewReader(io.NewSectionReader(body, 0, min(body.Size(), maxFromScan)))
	var from []string
	cur := -1 // index in from of the field being gathered, -1 for other fields
	for {
		line, err := br.ReadString('\n')
		t := strings.TrimRight(line, "\r\n")
		if t == "" {
			break
		}
		if t[0] == ' ' || t[0] == '\t' {
			if cur >= 0 {
				from[cur] += t
			}
		} else if name, value, ok := strings.Cut(t, ":"); ok && strings.EqualFold(strings.TrimSpace(name), "from") {
			from = append(from, value)
			cur = len(from) - 1
		} else {
			cur = -1
		}
		if err != nil {
			break
		}
	}
	if len(from) != 1 {
		return ""
	}
	ds := mailauth.FromDomains(from[0])
	if len(ds) != 1 {
		return ""
	}
	return ds[0]
}

// returnPathEnd is the offset just after a Return-Path: field that starts
// body (with its continuation lines), or 0.
func returnPathEnd(body store.Body) int64 {
	const name = "return-path:"
	head := make([]byte, 4096)
	n, _ := body.ReadAt(head, 0)
	head = head[:n]
	if len(head) < len(name) || !strings.EqualFold(string(head[:len(name)]), name) {
		return 0
	}
	off := 0
	for {
		i := bytes.IndexByte(head[off:], '\n')
		if i < 0 {
			return 0 // longer than we look at: insert at the top
		}
		off += i + 1
		if off >= len(head) || (head[off] != ' ' && head[off] != '\t') {
			return int64(off)
		}
	}
}

// Insert returns body with text inserted at offset at, without copying
// body: header fields added in front of a spooled message (DKIM-Signature,
// Authentication-Results).
func Insert(body store.Body, at int64, text []byte) store.Body {
	if at < 0 || at > body.Size() {
		at = 0
	}
	return &spliced{b: body, at: at, ins: text}
}

// spliced is a body with bytes inserted.
type spliced struct {
	b   store.Body
	at  int64
	ins []byte

	once sync.Once
	buf  []byte
}

func (s *spliced) Size() int64 { return s.b.Size() + int64(len(s.ins)) }

func (s *spliced) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("deliver: negative offset")
	}
	n := 0
	for len(p) > 0 {
		var m int
		var err error
		switch end := s.at + int64(len(s.ins)); {
		case off < s.at:
			q := p[:min(int64(len(p)), s.at-off)]
			m, err = s.b.ReadAt(q, off)
			if m == len(q) {
				err = nil
			}
		case off < end:
			m = copy(p, s.ins[off-s.at:])
		default:
			m, err = s.b.ReadAt(p, off-int64(len(s.ins)))
		}
		n += m
		off += int64(m)
		p = p[m:]
		if err != nil {
			return n, err
		}
		if m == 0 {
			return n, io.EOF
		}
	}
	return n, nil
}

// Bytes gives the whole message when the body it was made from is in
// memory (the store and the parser then take the fast path), else nil.
func (s *spliced) Bytes() []byte {
	bb, ok := s.b.(bytesBody)
	if !ok {
		return nil
	}
	s.once.Do(func() {
		b := bb.Bytes()
		if b == nil {
			return
		}
		out := make([]byte, 0, len(b)+len(s.ins))
		out = append(out, b[:s.at]...)
		out = append(out, s.ins...)
		s.buf = append(out, b[s.at:]...)
	})
	return s.buf
}
