package mailauth

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

// SignedHeaders are the header fields posthorn signs (RFC 6376 section
// 5.4.1's recommendations). From appears twice: signing one more instance
// than the message has makes a second From added later break the signature
// (RFC 6376 section 8.15, "oversigning").
var SignedHeaders = []string{
	"From", "From", "To", "Cc", "Subject", "Date", "Message-ID", "Reply-To",
	"MIME-Version", "Content-Type", "In-Reply-To", "References",
}

// Key file names: <dir>/<domain>/<selector>.ed25519.pem and .rsa.pem, where
// <selector> is the DNS selector (s=).
const (
	ed25519Suffix = ".ed25519.pem"
	rsaSuffix     = ".rsa.pem"
)

// rsaBits is the RSA key size: 2048 bits, within RFC 8301 section 3.2's
// 1024-4096 and what DNS TXT records hold comfortably.
const rsaBits = 2048

// SigningKey is one private key of a domain.
type SigningKey struct {
	Selector  string
	Algorithm string // "ed25519" or "rsa"
	Key       crypto.Signer
	Path      string
	modTime   time.Time
}

// Signer signs mail of one domain with its newest Ed25519 key and its newest
// RSA key (RFC 8463 section 4 dual signing: verifiers that know Ed25519 use
// that signature, the others the RSA one).
type Signer struct {
	Domain string
	Keys   []SigningKey // Ed25519 first, when there is one

	// canon overrides relaxed/relaxed, for tests of the simple algorithms.
	canon [2]dkim.Canonicalization
}

// GenerateKeys makes a new Ed25519 and a new RSA-2048 key for domain. Two
// keys cannot share a selector (each selector is one DNS name, RFC 6376
// section 3.6.2.1), so the selectors are <selector>-ed25519 and
// <selector>-rsa, written as PKCS#8 PEM files
// <dir>/<domain>/<selector>-ed25519.ed25519.pem and
// <dir>/<domain>/<selector>-rsa.rsa.pem (mode 0600). In general a key file is
// <dir>/<domain>/<dns-selector>.<algorithm>.pem, so keys made elsewhere keep
// their selectors. Existing files are not overwritten: a new selector is how
// keys are rotated.
func GenerateKeys(dir, domain, selector string) error {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	if err := checkKeyName(domain); err != nil {
		return fmt.Errorf("mailauth: domain %q: %w", domain, err)
	}
	if err := checkKeyName(selector); err != nil {
		return fmt.Errorf("mailauth: selector %q: %w", selector, err)
	}
	ddir := filepath.Join(dir, domain)
	if err := os.MkdirAll(ddir, 0o700); err != nil {
		return fmt.Errorf("mailauth: %w", err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("mailauth: ed25519 key: %w", err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, rsaBits)
	if err != nil {
		return fmt.Errorf("mailauth: rsa key: %w", err)
	}
	for _, k := range []struct {
		suffix string
		key    any
	}{{"-ed25519" + ed25519Suffix, edKey}, {"-rsa" + rsaSuffix, rsaKey}} {
		der, err := x509.MarshalPKCS8PrivateKey(k.key)
		if err != nil {
			return fmt.Errorf("mailauth: %w", err)
		}
		path := filepath.Join(ddir, selector+k.suffix)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("mailauth: %w", err)
		}
		err = pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("mailauth: writing %s: %w", path, err)
		}
	}
	return nil
}

// checkKeyName accepts a DNS label sequence usable in a file name: selectors
// and domains become both (RFC 6376 section 3.1 selectors are sub-domains).
func checkKeyName(s string) error {
	if s == "" || len(s) > 253 || strings.HasPrefix(s, ".") || strings.HasSuffix(s, ".") || strings.Contains(s, "..") {
		return errors.New("not a domain name")
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return fmt.Errorf("character %q not allowed", c)
		}
	}
	return nil
}

// LoadSigner reads the keys of domain from <dir>/<domain>/ and returns a
// Signer with the newest key of each algorithm (by file modification time,
// then by selector name), so that adding a selector rotates the keys.
func LoadSigner(dir, domain string) (*Signer, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	if err := checkKeyName(domain); err != nil {
		return nil, fmt.Errorf("mailauth: domain %q: %w", domain, err)
	}
	keys, err := loadKeys(filepath.Join(dir, domain))
	if err != nil {
		return nil, err
	}
	s := &Signer{Domain: domain}
	for _, alg := range []string{"ed25519", "rsa"} {
		var best *SigningKey
		for i := range keys {
			k := &keys[i]
			if k.Algorithm != alg {
				continue
			}
			if best == nil || k.modTime.After(best.modTime) ||
				(k.modTime.Equal(best.modTime) && k.Selector > best.Selector) {
				best = k
			}
		}
		if best != nil {
			s.Keys = append(s.Keys, *best)
		}
	}
	if len(s.Keys) == 0 {
		return nil, fmt.Errorf("mailauth: no DKIM keys for %s in %s", domain, filepath.Join(dir, domain))
	}
	return s, nil
}

func loadKeys(ddir string) ([]SigningKey, error) {
	ents, err := os.ReadDir(ddir)
	if err != nil {
		return nil, fmt.Errorf("mailauth: %w", err)
	}
	var keys []SigningKey
	for _, e := range ents {
		name := e.Name()
		var sel, alg string
		switch {
		case strings.HasSuffix(name, ed25519Suffix):
			sel, alg = strings.TrimSuffix(name, ed25519Suffix), "ed25519"
		case strings.HasSuffix(name, rsaSuffix):
			sel, alg = strings.TrimSuffix(name, rsaSuffix), "rsa"
		default:
			continue
		}
		path := filepath.Join(ddir, name)
		info, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("mailauth: %w", err)
		}
		key, err := readPrivateKey(path)
		if err != nil {
			return nil, err
		}
		if keyAlgorithm(key.Public()) != alg {
			return nil, fmt.Errorf("mailauth: %s does not hold an %s key", path, alg)
		}
		keys = append(keys, SigningKey{Selector: sel, Algorithm: alg, Key: key, Path: path, modTime: info.ModTime()})
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Path < keys[j].Path })
	return keys, nil
}

// readPrivateKey reads a PEM private key: PKCS#8, or PKCS#1 for RSA (what
// older tools such as dkimpy's dknewkey and opendkim-genkey write).
func readPrivateKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("mailauth: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("mailauth: %s: no PEM block", path)
	}
	var key any
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("mailauth: %s: %w", path, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok || keyAlgorithm(signer.Public()) == "" {
		return nil, fmt.Errorf("mailauth: %s: not an Ed25519 or RSA key", path)
	}
	if rk, ok := key.(*rsa.PrivateKey); ok && rk.N.BitLen() < 1024 {
		// RFC 8301 section 3.2: verifiers ignore shorter keys.
		return nil, fmt.Errorf("mailauth: %s: RSA key shorter than 1024 bits", path)
	}
	return signer, nil
}

func keyAlgorithm(pub crypto.PublicKey) string {
	switch pub.(type) {
	case ed25519.PublicKey:
		return "ed25519"
	case *rsa.PublicKey:
		return "rsa"
	}
	return ""
}

// DNSRecord returns the TXT record value that publishes pub (RFC 6376
// section 3.6.1, RFC 8463 section 4.2): "v=DKIM1; k=ed25519; p=..." or
// "v=DKIM1; k=rsa; p=..." with the SubjectPublicKeyInfo of an RSA key.
func DNSRecord(pub crypto.PublicKey) (string, error) {
	var alg string
	var p []byte
	switch k := pub.(type) {
	case ed25519.PublicKey:
		alg, p = "ed25519", k
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			return "", fmt.Errorf("mailauth: %w", err)
		}
		alg, p = "rsa", der
	default:
		return "", fmt.Errorf("mailauth: unsupported key type %T", pub)
	}
	return "v=DKIM1; k=" + alg + "; p=" + base64.StdEncoding.EncodeToString(p), nil
}

// KeyRecord is a DNS record to publish for a signing key.
type KeyRecord struct {
	Name  string // <selector>._domainkey.<domain>
	Value string // the TXT value
}

// Records returns the TXT records for the signer's keys.
func (s *Signer) Records() ([]KeyRecord, error) {
	var out []KeyRecord
	for _, k := range s.Keys {
		v, err := DNSRecord(k.Key.Public())
		if err != nil {
			return nil, err
		}
		out = append(out, KeyRecord{Name: k.Selector + "._domainkey." + s.Domain, Value: v})
	}
	return out, nil
}

// ErrNoFrom is returned when a message to sign has no From field, or more
// than one: RFC 6376 section 5.4 requires From to be signed, and RFC 5322
// section 3.6 allows exactly one.
var ErrNoFrom = errors.New("mailauth: message must have exactly one From header field to be signed")

// Sign reads a whole message and returns the DKIM-Signature header fields
// (one per key, each ending in CRLF) to put in front of it. The message is
// read once; its body is not held in memory.
func (s *Signer) Sign(msg io.Reader) (string, error) {
	hdr, body, err := readHeader(msg)
	if err != nil {
		return "", err
	}
	if len(fieldsNamed(splitFields(hdr), "From")) != 1 {
		return "", ErrNoFrom
	}
	hcanon, bcanon := dkim.Canonicalization(dkim.CanonicalizationRelaxed), dkim.Canonicalization(dkim.CanonicalizationRelaxed)
	if s.canon[0] != "" {
		hcanon, bcanon = s.canon[0], s.canon[1]
	}
	signers := make([]*dkim.Signer, 0, len(s.Keys))
	writers := make([]io.Writer, 0, len(s.Keys))
	defer func() {
		for _, sg := range signers {
			sg.Close()
		}
	}()
	for _, k := range s.Keys {
		sg, err := dkim.NewSigner(&dkim.SignOptions{
			Domain:                 s.Domain,
			Selector:               k.Selector,
			Signer:                 k.Key,
			HeaderCanonicalization: hcanon,
			BodyCanonicalization:   bcanon,
			HeaderKeys:             SignedHeaders,
		})
		if err != nil {
			return "", fmt.Errorf("mailauth: %w", err)
		}
		signers = append(signers, sg)
		writers = append(writers, sg)
	}
	if _, err := io.Copy(io.MultiWriter(writers...), io.MultiReader(bytes.NewReader(hdr), body)); err != nil {
		return "", fmt.Errorf("mailauth: signing: %w", err)
	}
	var out strings.Builder
	for _, sg := range signers {
		if err := sg.Close(); err != nil {
			return "", fmt.Errorf("mailauth: signing: %w", err)
		}
		out.WriteString(sg.Signature())
	}
	signers = nil
	return out.String(), nil
}
