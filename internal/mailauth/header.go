package mailauth

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// maxHeaderBytes bounds the header block read into memory: DKIM needs the whole
// header before the body (RFC 6376 section 5.4), so a sender could otherwise
// make us hold an unbounded amount.
const maxHeaderBytes = 1 << 20

// ErrHeaderTooLarge is returned when a message's header block exceeds 1 MiB.
var ErrHeaderTooLarge = errors.New("mailauth: header block larger than 1 MiB")

// readHeader reads the header block of a message (up to and including the
// empty line that ends it, or to the end of input for a message without a
// body) and returns it with a reader positioned at the body.
func readHeader(r io.Reader) ([]byte, *bufio.Reader, error) {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 32*1024)
	}
	var hdr []byte
	atStart := true // the next chunk starts a line
	for {
		line, err := br.ReadSlice('\n')
		start := atStart
		atStart = len(line) > 0 && line[len(line)-1] == '\n'
		if errors.Is(err, bufio.ErrBufferFull) {
			err = nil
		}
		hdr = append(hdr, line...)
		if len(hdr) > maxHeaderBytes {
			return nil, nil, ErrHeaderTooLarge
		}
		if err == io.EOF {
			return hdr, br, nil
		}
		if err != nil {
			return nil, nil, fmt.Errorf("mailauth: reading header: %w", err)
		}
		// An empty line ends the header (RFC 5322 section 2.1); a line of
		// just "\n" is accepted as well as "\r\n".
		if start && (string(line) == "\n" || string(line) == "\r\n") {
			return hdr, br, nil
		}
	}
}

// field is one header field as it appears in the message: Raw is the whole
// field including folding and the final line break, Name is the field name
// without surrounding white space.
type field struct {
	Name string
	Raw  []byte
}

// Value returns the field's value: everything after the colon, unfolded
// (RFC 5322 section 2.2.3), without the final line break.
func (f field) Value() string {
	i := bytes.IndexByte(f.Raw, ':')
	if i < 0 {
		return ""
	}
	v := f.Raw[i+1:]
	v = bytes.TrimRight(v, "\r\n")
	s := strings.ReplaceAll(string(v), "\r\n", "")
	return strings.ReplaceAll(s, "\n", "")
}

// splitFields splits a header block into fields. Lines that are neither a
// field nor a continuation (no colon) are kept as fields with an empty name so
// that rewriting a header loses nothing; the final empty line is not a field.
func splitFields(hdr []byte) []field {
	var fields []field
	for len(hdr) > 0 {
		end := bytes.IndexByte(hdr, '\n')
		if end < 0 {
			end = len(hdr)
		} else {
			end++
		}
		line := hdr[:end]
		if bytes.Equal(line, []byte("\r\n")) || bytes.Equal(line, []byte("\n")) {
			break
		}
		if (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			last := &fields[len(fields)-1]
			last.Raw = last.Raw[:len(last.Raw)+len(line)]
		} else {
			name := ""
			if i := bytes.IndexByte(line, ':'); i > 0 {
				name = string(bytes.TrimRight(line[:i], " \t"))
			}
			// Raw grows by re-slicing the original block over the
			// continuation lines, so it keeps the block's capacity.
			fields = append(fields, field{Name: name, Raw: hdr[:len(line)]})
		}
		hdr = hdr[end:]
	}
	return fields
}

// fieldsNamed returns the values of every field called name (case-insensitive).
func fieldsNamed(fields []field, name string) []string {
	var out []string
	for _, f := range fields {
		if strings.EqualFold(f.Name, name) {
			out = append(out, f.Value())
		}
	}
	return out
}
