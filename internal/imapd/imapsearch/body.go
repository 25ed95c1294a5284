package imapsearch

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"mime/quotedprintable"
	"strings"

	"github.com/emersion/go-message/charset"

	"github.com/posthorn/posthorn/internal/msg"
)

// chunkSize is how much decoded text is folded and searched at a time.
const chunkSize = 32 << 10

// scanner searches the text of a message's parts for a folded needle
// (SEARCH BODY, RFC 9051 section 6.4.4). It keeps its buffers between
// messages: a search over a mailbox allocates them once.
type scanner struct {
	raw    []byte // decoded bytes read, a partial rune carried at the front
	fold   []byte // folded text: the tail of the previous chunk, then this one
	hbuf   []byte // headers of message/rfc822 parts
	b64    []byte // base64 text read
	b64out []byte // and decoded
	scr    []byte
}

// searchPart searches p: the text/* leaves of multiparts, and for a
// message/rfc822 part the decoded header and text of the inner message
// (it is part of the outer message's body). Other parts (images,
// applications) are not text and are skipped.
func (s *scanner) searchPart(ctx context.Context, r io.ReaderAt, p *msg.Part, needle []byte, depth int) (bool, error) {
	if depth > msg.MaxDepth+1 {
		return false, nil
	}
	switch {
	case len(p.Children) > 0:
		for i := range p.Children {
			if ok, err := s.searchPart(ctx, r, &p.Children[i], needle, depth+1); ok || err != nil {
				return ok, err
			}
		}
	case p.Message != nil:
		var err error
		s.hbuf, err = readHeader(r, &p.Message.Part, s.hbuf)
		if err != nil {
			return false, err
		}
		found := false
		s.scr = eachField(s.hbuf, s.scr, func(name, val []byte) bool {
			found = containsFold(string(name)+": "+decodeHeader(string(val)), needle)
			return !found
		})
		if found {
			return true, nil
		}
		return s.searchPart(ctx, r, &p.Message.Part, needle, depth+1)
	case p.Type == "text", p.Type == "multipart":
		// A multipart in which no delimiter was found has no parts: its
		// body is shown as text, so it is searched as text.
		return s.searchText(ctx, r, p, needle)
	}
	return false, nil
}

// searchText decodes a text part's body (RFC 2045 section 6: base64 and
// quoted-printable; a soft line break disappears in decoding, so words
// split by one still match), converts its charset to UTF-8 and searches it.
func (s *scanner) searchText(ctx context.Context, r io.ReaderAt, p *msg.Part, needle []byte) (bool, error) {
	src := &readErr{r: io.NewSectionReader(r, p.BodyStart, p.End-p.BodyStart)}
	var rd io.Reader = src
	switch p.Encoding {
	case "base64":
		if s.b64 == nil {
			s.b64, s.b64out = make([]byte, chunkSize), make([]byte, chunkSize/4*3+3)
		}
		rd = newBase64Reader(src, s.b64, s.b64out)
	case "quoted-printable":
		rd = quotedprintable.NewReader(src)
	}
	switch cs := strings.ToLower(p.Param("charset")); cs {
	case "", "utf-8", "utf8", "us-ascii", "ascii":
	default:
		// An unknown charset is searched as it is: ASCII words still match.
		if cr, err := charset.Reader(cs, rd); err == nil {
			rd = cr
		}
	}
	ok, err := s.stream(ctx, rd, needle)
	if src.err != nil {
		return false, src.err
	}
	if err != nil && ctx.Err() != nil {
		return false, err
	}
	// Any other error is malformed content (bad base64, a charset
	// decoder's complaint): what was decoded until then has been searched.
	return ok, nil
}

// stream folds rd chunk by chunk and looks for needle, keeping the last
// len(needle)-1 folded bytes of each chunk before the next so that a match
// across chunks is found.
func (s *scanner) stream(ctx context.Context, rd io.Reader, needle []byte) (bool, error) {
	if s.raw == nil {
		s.raw = make([]byte, chunkSize)
	}
	raw := s.raw
	fold := s.fold[:0]
	defer func() { s.fold = fold[:0] }()
	pend, idle := 0, 0
	for {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		n, err := rd.Read(raw[pend:])
		data := raw[:pend+n]
		complete := len(data)
		if err == nil {
			complete = completeRunes(data)
		}
		fold = appendFold(fold, data[:complete])
		if bytes.Contains(fold, needle) {
			return true, nil
		}
		if k := len(needle) - 1; len(fold) > k {
			fold = fold[:copy(fold, fold[len(fold)-k:])]
		}
		pend = copy(raw, data[complete:])
		if err != nil {
			if err == io.EOF {
				return false, nil
			}
			return false, err
		}
		if n == 0 {
			if idle++; idle > 100 {
				return false, io.ErrNoProgress
			}
		} else {
			idle = 0
		}
	}
}

// readErr remembers an error of the underlying message reader, to tell a
// failing store (an error for the command) from malformed content.
type readErr struct {
	r   io.Reader
	err error
}

func (e *readErr) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		e.err = err
	}
	return n, err
}

// base64Reader decodes a base64 body (RFC 2045 section 6.8), skipping
// what is not base64 alphabet: encoding/base64 skips only CR and LF, and
// messages carry spaces and other junk that decoders conventionally
// ignore. Padding is dropped and the final partial quantum decoded as it
// is.
type base64Reader struct {
	r     io.Reader
	in    []byte // alphabet characters not yet decoded, then read space
	out   []byte // decoded, not yet returned
	obuf  []byte
	err   error
	carry int
}

var base64Alphabet [256]bool

func init() {
	for _, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/" {
		base64Alphabet[c] = true
	}
}

// newBase64Reader reads r with the buffers in (read space) and out (at
// least 3/4 of in, for decoded bytes), which a scanner keeps.
func newBase64Reader(r io.Reader, in, out []byte) *base64Reader {
	return &base64Reader{r: r, in: in, obuf: out}
}

func (b *base64Reader) Read(p []byte) (int, error) {
	for len(b.out) == 0 {
		if b.err != nil {
			return 0, b.err
		}
		n, err := b.r.Read(b.in[b.carry:])
		j := b.carry
		for _, c := range b.in[b.carry : b.carry+n] {
			if base64Alphabet[c] {
				b.in[j] = c
				j++
			}
		}
		use := j &^ 3
		if err != nil {
			use = j
			if j%4 == 1 {
				use = j - 1 // a lone character is no octet
			}
			b.err = err
		}
		if cap(b.obuf) < len(b.in)/4*3+3 {
			b.obuf = make([]byte, len(b.in)/4*3+3)
		}
		m, derr := base64.RawStdEncoding.Decode(b.obuf[:cap(b.obuf)], b.in[:use])
		if derr != nil && b.err == nil {
			b.err = derr
		}
		b.out = b.obuf[:m]
		b.carry = copy(b.in, b.in[use:j])
	}
	n := copy(p, b.out)
	b.out = b.out[n:]
	return n, nil
}
