package auth

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/posthorn/posthorn/internal/store"
)

// SCRAM-SHA-256 parameters for new credentials. RFC 7677 section 4 asks for
// at least 4096 iterations; more makes a stolen credential dearer to guess
// offline (it is as good as a password hash to an attacker), and the client
// pays the iterations once per login: 16384 is a few milliseconds on a phone.
const (
	scramIterations    = 16384
	scramMinIterations = 4096
	// Bound on a stored count: the server announces it and the client computes
	// it, so a tampered credential must not make clients spin.
	scramMaxIterations = 1 << 22
	scramSaltLen       = 16
	scramNonceLen      = 18 // random bytes; 24 characters of base64
	// maxSCRAMMessage bounds one client message; real ones are ~100 bytes.
	maxSCRAMMessage = 2048
)

// scramCredential is what the server keeps for SCRAM-SHA-256 (RFC 5802
// section 3): enough to check a proof, not enough to log in elsewhere with.
type scramCredential struct {
	iter      int
	salt      []byte
	storedKey []byte // H(ClientKey)
	serverKey []byte // HMAC(SaltedPassword, "Server Key")
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// deriveSCRAM computes a credential from a prepared password (RFC 5802
// section 3: SaltedPassword = Hi(password, salt, i), which is PBKDF2 with
// HMAC-SHA-256 and one block).
func deriveSCRAM(password string, salt []byte, iter int) (scramCredential, error) {
	salted, err := pbkdf2.Key(sha256.New, password, salt, iter, sha256.Size)
	if err != nil {
		return scramCredential{}, fmt.Errorf("auth: pbkdf2: %w", err)
	}
	clientKey := hmacSHA256(salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	return scramCredential{
		iter:      iter,
		salt:      salt,
		storedKey: stored[:],
		serverKey: hmacSHA256(salted, "Server Key"),
	}, nil
}

var b64std = base64.StdEncoding

// String gives RFC 5803's form: SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>.
func (c scramCredential) String() string {
	return fmt.Sprintf("%s$%d:%s$%s:%s", SCRAMSHA256, c.iter, b64std.EncodeToString(c.salt),
		b64std.EncodeToString(c.storedKey), b64std.EncodeToString(c.serverKey))
}

// parseSCRAM reads a stored credential (RFC 5803 section 3).
func parseSCRAM(s string) (scramCredential, error) {
	bad := errors.New("auth: malformed SCRAM-SHA-256 credential")
	rest, ok := strings.CutPrefix(s, SCRAMSHA256+"$")
	if !ok {
		return scramCredential{}, bad
	}
	params, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return scramCredential{}, bad
	}
	iterS, saltS, ok1 := strings.Cut(params, ":")
	storedS, serverS, ok2 := strings.Cut(keys, ":")
	if !ok1 || !ok2 {
		return scramCredential{}, bad
	}
	iter, err := strconv.Atoi(iterS)
	if err != nil || iter < scramMinIterations || iter > scramMaxIterations {
		return scramCredential{}, bad
	}
	var c scramCredential
	c.iter = iter
	if c.salt, err = b64std.DecodeString(saltS); err != nil || len(c.salt) == 0 {
		return scramCredential{}, bad
	}
	if c.storedKey, err = b64std.DecodeString(storedS); err != nil || len(c.storedKey) != sha256.Size {
		return scramCredential{}, bad
	}
	if c.serverKey, err = b64std.DecodeString(serverS); err != nil || len(c.serverKey) != sha256.Size {
		return scramCredential{}, bad
	}
	return c, nil
}

// scramPassword returns password as SCRAM hashes it: its SASLprep (RFC 4013,
// required by RFC 5802 section 2.2). Without Unicode normalisation tables
// (no new dependency for them), posthorn prepares only the passwords that
// SASLprep leaves as they are: printable ASCII and the Latin-1 letters
// U+00C0..U+00FF (already in NFKC, not mapped, not prohibited, no bidi
// characters; a test checks this against a full SASLprep). For any other
// password ok is false: that account gets no SCRAM credential and logs in
// with PLAIN or LOGIN.
func scramPassword(password string) (prepared string, ok bool) {
	if password == "" || len(password) > MaxPasswordLen || !utf8.ValidString(password) {
		return "", false
	}
	for _, r := range password {
		if !(r >= 0x20 && r <= 0x7e || r >= 0xc0 && r <= 0xff) {
			return "", false
		}
	}
	return password, true
}

// newSCRAMCredential makes a credential with a fresh salt, or "" when the
// password cannot be prepared (see scramPassword).
func newSCRAMCredential(password string) (string, error) {
	p, ok := scramPassword(password)
	if !ok {
		return "", nil
	}
	salt := make([]byte, scramSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("auth: salt: %w", err)
	}
	c, err := deriveSCRAM(p, salt, scramIterations)
	if err != nil {
		return "", err
	}
	return c.String(), nil
}

// NewCredentials makes what the store keeps for a password being set (user
// add, user passwd, the demo account): its argon2id hash and its
// SCRAM-SHA-256 credential, for store.Store.SetPassword. scramSHA256 is ""
// for a password SCRAM cannot use here (characters beyond Latin-1 letters:
// see scramPassword); such an account logs in with PLAIN and LOGIN only. err
// is ErrBadPassword for an empty or too long password.
func NewCredentials(password string) (hash, scramSHA256 string, err error) {
	if hash, err = Hash(password); err != nil {
		return "", "", err
	}
	if scramSHA256, err = newSCRAMCredential(password); err != nil {
		return "", "", err
	}
	return hash, scramSHA256, nil
}

// decodeSASLName undoes RFC 5802 section 5.1's escaping of "," and "=" in
// user names: "=2C" and "=3D"; any other "=" is an error.
func decodeSASLName(s string) (string, error) {
	if s == "" || !utf8.ValidString(s) {
		return "", fmt.Errorf("%w: empty or invalid user name", ErrMalformed)
	}
	if !strings.Contains(s, "=") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], "=2C"):
			b.WriteByte(',')
		case strings.HasPrefix(s[i:], "=3D"):
			b.WriteByte('=')
		default:
			return "", fmt.Errorf("%w: bad escape in user name", ErrMalformed)
		}
		i += 2
	}
	return b.String(), nil
}

// validNonce: printable ASCII except "," (RFC 5802 section 7, "printable").
func validNonce(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == ',' {
			return false
		}
	}
	return true
}

// scramServer runs SCRAM-SHA-256 without channel binding (RFC 5802 section
// 5, RFC 7677). posthorn does not offer SCRAM-SHA-256-PLUS, so a client flag
// "n" (no binding) and "y" (client could bind but thinks the server cannot)
// are both right, and "p=" is refused (section 6).
//
// The server sends server-final ("v=...") as a challenge and finishes on the
// client's empty answer: SMTP (RFC 4954 section 4) has no room for data with
// the success reply, and this works the same in POP3 and IMAP.
type scramServer struct {
	a   *Authenticator
	ctx context.Context
	c   Client

	step       int
	asked      bool // an empty challenge was sent for a missing initial response
	gs2Header  string
	user       string
	clientBare string // client-first-message-bare, as sent
	first      string // server-first-message
	nonce      string // client nonce + server nonce
	cred       scramCredential
	acct       *store.Account // nil for an unknown user or one without a credential
	verified   *store.Account // the proof was right; logged in once the client acknowledges
	done       bool
	result     *store.Account
}

// Next implements Mechanism.
func (s *scramServer) Next(response []byte) ([]byte, bool, error) {
	if s.done {
		return nil, true, fmt.Errorf("%w: the exchange is over", ErrMalformed)
	}
	if response == nil && s.step == 0 && !s.asked {
		// No initial response: ask for client-first with an empty challenge
		// (RFC 4422 section 5).
		s.asked = true
		return []byte{}, false, nil
	}
	if len(response) > maxSCRAMMessage {
		return s.fail(s.malformed("client message too long"))
	}
	switch s.step {
	case 0:
		return s.clientFirst(string(response))
	case 1:
		return s.clientFinal(string(response))
	default:
		// The client acknowledges server-final with an empty response.
		s.done = true
		if len(response) != 0 {
			return nil, true, s.a.malformed(s.c, SCRAMSHA256, s.user, "data after server-final")
		}
		s.result = s.verified
		return nil, true, nil
	}
}

// Account implements Mechanism.
func (s *scramServer) Account() *store.Account { return s.result }

func (s *scramServer) malformed(why string) error {
	return s.a.malformed(s.c, SCRAMSHA256, s.user, why)
}

func (s *scramServer) fail(err error) ([]byte, bool, error) {
	s.done = true
	return nil, true, err
}

// clientFirst reads client-first-message (RFC 5802 section 7):
// gs2-cbind-flag "," [authzid] "," ["m=" ext ","] "n=" saslname "," "r=" nonce ["," extensions]
// and answers server-first-message: "r=" nonce "," "s=" salt "," "i=" count.
func (s *scramServer) clientFirst(msg string) ([]byte, bool, error) {
	flag, rest, ok := strings.Cut(msg, ",")
	if !ok {
		return s.fail(s.malformed("no gs2 header"))
	}
	switch {
	case flag == "n", flag == "y":
	case strings.HasPrefix(flag, "p="):
		return s.fail(s.malformed("channel binding requested; SCRAM-SHA-256-PLUS is not offered"))
	default:
		return s.fail(s.malformed("bad gs2 channel binding flag"))
	}
	authzid, bare, ok := strings.Cut(rest, ",")
	if !ok {
		return s.fail(s.malformed("no gs2 header"))
	}
	s.gs2Header = flag + "," + authzid + ","
	s.clientBare = bare
	if strings.HasPrefix(bare, "m=") {
		return s.fail(s.malformed("mandatory extension not supported"))
	}
	attrs := strings.Split(bare, ",")
	if len(attrs) < 2 || !strings.HasPrefix(attrs[0], "n=") || !strings.HasPrefix(attrs[1], "r=") {
		return s.fail(s.malformed("client-first needs n= and r="))
	}
	user, err := decodeSASLName(attrs[0][2:])
	if err != nil {
		return s.fail(s.malformed("bad user name"))
	}
	s.user = user
	if authzid != "" {
		z, err := decodeSASLName(strings.TrimPrefix(authzid, "a="))
		if !strings.HasPrefix(authzid, "a=") || err != nil {
			return s.fail(s.malformed("bad authorization identity"))
		}
		if !strings.EqualFold(z, user) {
			s.done = true
			return nil, true, s.a.refuse(s.c, SCRAMSHA256, user, "authzid differs")
		}
	}
	cnonce := attrs[1][2:]
	if !validNonce(cnonce) {
		return s.fail(s.malformed("bad client nonce"))
	}
	for _, ext := range attrs[2:] {
		if len(ext) < 2 || ext[1] != '=' {
			return s.fail(s.malformed("bad extension"))
		}
	}

	acct, err := s.a.accounts.GetAccount(s.ctx, user)
	switch {
	case err == nil && acct.SCRAMSHA256 != "":
		c, perr := parseSCRAM(acct.SCRAMSHA256)
		if perr != nil {
			s.a.log.Error("auth: unreadable SCRAM credential; set the password again", "user", acct.Name)
			s.cred = s.a.fakeSCRAM(user)
		} else {
			s.cred, s.acct = c, acct
		}
	case err == nil, errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrInvalidName):
		// An unknown user, or one whose credential was never made, gets a
		// made-up salt that stays the same for that name: the answer must not
		// tell them apart from a real account (RFC 5802 section 9).
		s.cred = s.a.fakeSCRAM(user)
	default:
		s.done = true
		return nil, true, fmt.Errorf("auth: looking up %q: %w", user, err)
	}
	s.nonce = cnonce + s.a.nonce()
	s.first = "r=" + s.nonce + ",s=" + b64std.EncodeToString(s.cred.salt) + ",i=" + strconv.Itoa(s.cred.iter)
	s.step = 1
	return []byte(s.first), false, nil
}

// clientFinal reads client-final-message (RFC 5802 section 7):
// "c=" base64(gs2-header) "," "r=" nonce ["," extensions] "," "p=" proof
// and checks the proof; on success it answers server-final "v=" signature.
func (s *scramServer) clientFinal(msg string) ([]byte, bool, error) {
	i := strings.LastIndex(msg, ",p=")
	if i < 0 {
		return s.fail(s.malformed("no proof"))
	}
	withoutProof, proofS := msg[:i], msg[i+3:]
	attrs := strings.Split(withoutProof, ",")
	if len(attrs) < 2 || !strings.HasPrefix(attrs[0], "c=") || !strings.HasPrefix(attrs[1], "r=") {
		return s.fail(s.malformed("client-final needs c= and r="))
	}
	cb, err := b64std.DecodeString(attrs[0][2:])
	if err != nil || string(cb) != s.gs2Header {
		// Without channel binding, c= carries the gs2 header back unchanged;
		// anything else is a downgrade or a broken client (section 6).
		return s.fail(s.malformed("channel binding data does not match the gs2 header"))
	}
	if attrs[1][2:] != s.nonce {
		return s.fail(s.malformed("nonce does not match"))
	}
	for _, ext := range attrs[2:] {
		if len(ext) < 2 || ext[1] != '=' {
			return s.fail(s.malformed("bad extension"))
		}
	}
	proof, err := b64std.DecodeString(proofS)
	if err != nil || len(proof) != sha256.Size {
		return s.fail(s.malformed("bad proof"))
	}

	authMessage := s.clientBare + "," + s.first + "," + withoutProof
	acct, err := s.a.login(s.ctx, s.c, SCRAMSHA256, s.user, func() (*store.Account, string, error) {
		ok := s.a.checkProof(s.cred, authMessage, proof)
		switch {
		case s.acct == nil:
			return nil, "unknown user or no SCRAM credential", ErrMismatch
		case !ok:
			return nil, "wrong password", ErrMismatch
		}
		return s.acct, "", nil
	})
	if err != nil {
		return s.fail(err)
	}
	s.verified = acct
	s.step = 2
	return []byte("v=" + b64std.EncodeToString(hmacSHA256(s.cred.serverKey, authMessage))), false, nil
}

// checkProof verifies a ClientProof (RFC 5802 section 3): ClientKey =
// ClientProof XOR HMAC(StoredKey, AuthMessage), and H(ClientKey) must be
// StoredKey. It runs the same steps for real and made-up credentials.
func (a *Authenticator) checkProof(c scramCredential, authMessage string, proof []byte) bool {
	if a.proofHook != nil {
		a.proofHook()
	}
	sig := hmacSHA256(c.storedKey, authMessage)
	clientKey := make([]byte, len(proof))
	subtle.XORBytes(clientKey, proof, sig)
	got := sha256.Sum256(clientKey)
	return subtle.ConstantTimeCompare(got[:], c.storedKey) == 1
}

// fakeSCRAM makes a credential for a user who has none: salt and keys come
// from a per-process secret and the name, so that asking twice gives the
// same salt, as a real account would. No password matches it.
func (a *Authenticator) fakeSCRAM(user string) scramCredential {
	name := strings.ToLower(user)
	return scramCredential{
		iter:      scramIterations,
		salt:      hmacSHA256(a.secret, "salt\x00"+name)[:scramSaltLen],
		storedKey: hmacSHA256(a.secret, "stored\x00"+name),
		serverKey: hmacSHA256(a.secret, "server\x00"+name),
	}
}

// nonce returns a server nonce: random, printable, without ",".
func (a *Authenticator) nonce() string {
	if a.nonceHook != nil {
		return a.nonceHook()
	}
	b := make([]byte, scramNonceLen)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
