package dsn

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
)

// Parsed is a delivery status notification as Parse reads it. Field maps
// are keyed the net/textproto way (canonical case: "Remote-Mta"), so use
// their Get method, which is case-insensitive; folded fields are joined.
type Parsed struct {
	Header       mail.Header            // the notice's own header
	ReportType   string                 // "delivery-status" or "global-delivery-status"
	PerMessage   textproto.MIMEHeader   // per-message fields; empty (not nil) when the notice has none
	Recipients   []textproto.MIMEHeader // one per per-recipient group, in order
	Text         string                 // the human-readable first part, transfer-decoded (text/plain preferred)
	Returned     []byte                 // the part after the delivery status, transfer-decoded; nil when absent
	ReturnedType string                 // its media type, lower-case ("message/rfc822", "text/rfc822-headers", ...)
}

// maxNesting bounds how deep Parse looks for text/plain in a multipart
// first part.
const maxNesting = 5

// Parse reads a multipart/report message whose report-type is
// delivery-status (RFC 3464, RFC 6522) or global-delivery-status (RFC 6533).
// It uses only the standard library's readers. Each per-recipient group must
// have the Final-Recipient, Action and Status fields that RFC 3464 section
// 2.3 requires; a first group without Final-Recipient is the per-message one.
func Parse(b []byte) (*Parsed, error) {
	m, err := mail.ReadMessage(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("dsn: reading header: %w", err)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil {
		return nil, fmt.Errorf("dsn: Content-Type: %w", err)
	}
	if mt != "multipart/report" {
		return nil, fmt.Errorf("dsn: Content-Type is %s, not multipart/report", mt)
	}
	p := &Parsed{Header: m.Header, ReportType: strings.ToLower(params["report-type"])}
	if p.ReportType != "delivery-status" && p.ReportType != "global-delivery-status" {
		return nil, fmt.Errorf("dsn: report-type %q is not a delivery status", p.ReportType)
	}
	boundary := params["boundary"]
	if boundary == "" {
		return nil, errors.New("dsn: multipart/report without a boundary")
	}

	mr := multipart.NewReader(m.Body, boundary)
	seenStatus := false
	for i := 0; ; i++ {
		part, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("dsn: part %d: %w", i+1, err)
		}
		pt, pparams, body, err := readPart(part.Header, part)
		if err != nil {
			return nil, fmt.Errorf("dsn: part %d: %w", i+1, err)
		}
		switch {
		case i == 0:
			// RFC 6522 section 3: the first part is for people, of any type.
			p.Text, err = textOf(pt, pparams, body, 0)
			if err != nil {
				return nil, fmt.Errorf("dsn: part 1: %w", err)
			}
		case !seenStatus && pt == "message/"+p.ReportType:
			seenStatus = true
			if p.PerMessage, p.Recipients, err = parseFields(body); err != nil {
				return nil, err
			}
		case seenStatus && p.Returned == nil:
			p.Returned, p.ReturnedType = body, pt
		}
	}
	if !seenStatus {
		return nil, fmt.Errorf("dsn: no message/%s part", p.ReportType)
	}
	return p, nil
}

// readPart reads a part's body, undoing its Content-Transfer-Encoding, and
// returns its media type (text/plain when absent, as RFC 2045 section 5.2
// says).
func readPart(h textproto.MIMEHeader, r io.Reader) (string, map[string]string, []byte, error) {
	mt, params := "text/plain", map[string]string{}
	if ct := h.Get("Content-Type"); ct != "" {
		var err error
		if mt, params, err = mime.ParseMediaType(ct); err != nil {
			return "", nil, nil, fmt.Errorf("Content-Type: %w", err)
		}
	}
	raw, err := io.ReadAll(r)
	if err != nil {
		return "", nil, nil, err
	}
	switch cte := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))); cte {
	case "", "7bit", "8bit", "binary":
		return mt, params, raw, nil
	case "quoted-printable":
		body, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return "", nil, nil, fmt.Errorf("quoted-printable: %w", err)
		}
		return mt, params, body, nil
	case "base64":
		body, err := io.ReadAll(base64.NewDecoder(base64.StdEncoding, &noSpace{r: bytes.NewReader(raw)}))
		if err != nil {
			return "", nil, nil, fmt.Errorf("base64: %w", err)
		}
		return mt, params, body, nil
	default:
		return "", nil, nil, fmt.Errorf("unknown Content-Transfer-Encoding %q", cte)
	}
}

// noSpace drops the line breaks and spaces that base64 bodies are wrapped with.
type noSpace struct{ r io.Reader }

func (n *noSpace) Read(p []byte) (int, error) {
	for {
		k, err := n.r.Read(p)
		j := 0
		for _, c := range p[:k] {
			if c != '\r' && c != '\n' && c != ' ' && c != '\t' {
				p[j] = c
				j++
			}
		}
		if j > 0 || err != nil {
			return j, err
		}
	}
}

// textOf returns the text of the first part: the part itself when it is
// text, else the first text/plain (or, failing that, any text) inside a
// multipart.
func textOf(mt string, params map[string]string, body []byte, depth int) (string, error) {
	if !strings.HasPrefix(mt, "multipart/") {
		return string(body), nil
	}
	if depth >= maxNesting || params["boundary"] == "" {
		return "", nil
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var fallback string
	for {
		part, err := mr.NextRawPart()
		if err == io.EOF {
			return fallback, nil
		}
		if err != nil {
			return "", err
		}
		pt, pparams, pbody, err := readPart(part.Header, part)
		if err != nil {
			return "", err
		}
		if pt == "text/plain" {
			return string(pbody), nil
		}
		t, err := textOf(pt, pparams, pbody, depth+1)
		if err != nil {
			return "", err
		}
		if fallback == "" && (strings.HasPrefix(pt, "text/") || strings.HasPrefix(pt, "multipart/")) {
			fallback = t
		}
	}
}

// parseFields reads the body of a message/delivery-status: groups of
// header-style fields separated by blank lines (RFC 3464 section 2.1).
func parseFields(body []byte) (textproto.MIMEHeader, []textproto.MIMEHeader, error) {
	r := textproto.NewReader(bufio.NewReader(bytes.NewReader(body)))
	var groups []textproto.MIMEHeader
	for {
		h, err := r.ReadMIMEHeader()
		if len(h) > 0 {
			groups = append(groups, h)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("dsn: delivery status group %d: %w", len(groups)+1, err)
		}
	}
	per := textproto.MIMEHeader{}
	if len(groups) > 0 && groups[0].Get("Final-Recipient") == "" {
		per, groups = groups[0], groups[1:]
	}
	if len(groups) == 0 {
		return nil, nil, errors.New("dsn: delivery status has no per-recipient group")
	}
	for i, g := range groups {
		for _, name := range []string{"Final-Recipient", "Action", "Status"} {
			if g.Get(name) == "" {
				return nil, nil, fmt.Errorf("dsn: recipient group %d has no %s field", i+1, name)
			}
		}
	}
	return per, groups, nil
}
