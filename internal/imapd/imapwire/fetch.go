package imapwire

import (
	"strconv"
	"strings"
)

// FetchItem is one fetch attribute (RFC 9051 section 6.4.5). Name is
// upper-case: ENVELOPE, FLAGS, INTERNALDATE, RFC822.SIZE, RFC822,
// RFC822.HEADER, RFC822.TEXT, BODY, BODYSTRUCTURE, UID, MODSEQ, SAVEDATE,
// EMAILID, THREADID, and with a section BODY[], BINARY[] or
// BINARY.SIZE[]. The macros ALL, FAST and FULL are expanded.
type FetchItem struct {
	Name    string
	Peek    bool // BODY.PEEK / BINARY.PEEK: do not set \Seen
	Section *Section
	Partial *Partial
}

// Section is the part inside the brackets of BODY[...] and BINARY[...].
type Section struct {
	Part      []uint32 // 1.2.3; empty for the whole message
	Specifier string   // "", HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT, MIME
	Fields    []string // for HEADER.FIELDS(.NOT), as sent
}

// Partial is <offset.count>; Count is 0 when omitted (only possible for
// the response form, but kept general).
type Partial struct {
	Offset uint32
	Count  uint32
}

var fetchMacros = map[string][]string{
	"ALL":  {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"},
	"FAST": {"FLAGS", "INTERNALDATE", "RFC822.SIZE"},
	"FULL": {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"},
}

var simpleFetch = map[string]bool{
	"ENVELOPE": true, "FLAGS": true, "INTERNALDATE": true, "RFC822.SIZE": true,
	"RFC822": true, "RFC822.HEADER": true, "RFC822.TEXT": true, "BODY": true,
	"BODYSTRUCTURE": true, "UID": true, "MODSEQ": true, "SAVEDATE": true,
	"EMAILID": true, "THREADID": true,
}

func (r *Reader) parseFetch() (*FetchCommand, error) {
	var c FetchCommand
	if err := r.sp(); err != nil {
		return nil, err
	}
	var err error
	if c.Seq, err = r.seqSet(); err != nil {
		return nil, err
	}
	if err := r.sp(); err != nil {
		return nil, err
	}
	if r.peek() == '(' {
		r.pos++
		for {
			it, err := r.fetchItem()
			if err != nil {
				return nil, err
			}
			c.Items = append(c.Items, it)
			if r.peek() == ')' {
				r.pos++
				break
			}
			if err := r.sp(); err != nil {
				return nil, r.errf("unterminated fetch item list")
			}
		}
	} else {
		save := r.pos
		a := upper(r.take(isAtomChar))
		if m, ok := fetchMacros[a]; ok {
			for _, n := range m {
				c.Items = append(c.Items, FetchItem{Name: n})
			}
		} else {
			r.pos = save
			it, err := r.fetchItem()
			if err != nil {
				return nil, err
			}
			c.Items = []FetchItem{it}
		}
	}
	if r.maybeSP() {
		// fetch-modifiers (RFC 7162 section 3.1.4.1, 3.2.6)
		err = r.paramList(func(name string) error {
			switch name {
			case "CHANGEDSINCE":
				if err := r.sp(); err != nil {
					return err
				}
				n, err := r.number(64)
				if err == nil && n == 0 {
					return r.errf("CHANGEDSINCE 0 is not a mod-sequence")
				}
				c.ChangedSince = n
				return err
			case "VANISHED":
				c.Vanished = true
				return nil
			}
			return r.errf("unknown FETCH modifier %s", name)
		})
		if err != nil {
			return nil, err
		}
		if c.Vanished && c.ChangedSince == 0 {
			// RFC 7162 section 3.2.6: VANISHED needs CHANGEDSINCE.
			return nil, r.errf("VANISHED without CHANGEDSINCE")
		}
	}
	return &c, nil
}

// fetchItem reads one fetch-att.
func (r *Reader) fetchItem() (FetchItem, error) {
	// Names contain "." and stop at "[" (atom chars include "[").
	start := r.pos
	for r.pos < len(r.line) && isAtomChar(r.line[r.pos]) && r.line[r.pos] != '[' {
		r.pos++
	}
	name := upper(string(r.line[start:r.pos]))
	if name == "" {
		return FetchItem{}, r.badChar("fetch item")
	}
	if r.peek() != '[' {
		if simpleFetch[name] {
			return FetchItem{Name: name}, nil
		}
		return FetchItem{}, r.errf("unknown fetch item %s", name)
	}
	it := FetchItem{}
	switch name {
	case "BODY", "BINARY", "BINARY.SIZE":
		it.Name = name
	case "BODY.PEEK", "BINARY.PEEK":
		it.Name, it.Peek = strings.TrimSuffix(name, ".PEEK"), true
	default:
		return FetchItem{}, r.errf("unknown fetch item %s[", name)
	}
	r.pos++
	sec, err := r.section(it.Name != "BODY")
	if err != nil {
		return FetchItem{}, err
	}
	it.Section = sec
	if r.peek() == '<' {
		if it.Name == "BINARY.SIZE" {
			return FetchItem{}, r.errf("BINARY.SIZE takes no partial")
		}
		r.pos++
		off, err := r.number(32)
		if err != nil {
			return FetchItem{}, err
		}
		if err := r.expect('.'); err != nil {
			return FetchItem{}, err
		}
		n, err := r.nzNumber()
		if err != nil {
			return FetchItem{}, err
		}
		if err := r.expect('>'); err != nil {
			return FetchItem{}, err
		}
		it.Partial = &Partial{Offset: uint32(off), Count: n}
	}
	return it, nil
}

// section reads after "[" up to and including "]". binary restricts it
// to section-binary: part numbers only (RFC 3516 section 4.2).
func (r *Reader) section(binary bool) (*Section, error) {
	s := &Section{}
	for r.peek() >= '0' && r.peek() <= '9' {
		n, err := r.nzNumber()
		if err != nil {
			return nil, err
		}
		s.Part = append(s.Part, n)
		if r.peek() != '.' {
			break
		}
		r.pos++
		if c := r.peek(); c < '0' || c > '9' {
			break // a specifier follows "1."
		}
	}
	if r.peek() != ']' {
		if binary {
			return nil, r.errf("BINARY section takes part numbers only")
		}
		if len(s.Part) > 0 && r.line[r.pos-1] != '.' {
			return nil, r.errf("bad section at %q", r.rest())
		}
		start := r.pos
		for r.pos < len(r.line) && (isAtomChar(r.line[r.pos]) && r.line[r.pos] != '[') {
			r.pos++
		}
		s.Specifier = upper(string(r.line[start:r.pos]))
		switch s.Specifier {
		case "HEADER", "TEXT":
		case "MIME":
			if len(s.Part) == 0 {
				return nil, r.errf("MIME needs a part number")
			}
		case "HEADER.FIELDS", "HEADER.FIELDS.NOT":
			if err := r.sp(); err != nil {
				return nil, err
			}
			if err := r.expect('('); err != nil {
				return nil, err
			}
			for {
				f, err := r.astring()
				if err != nil {
					return nil, err
				}
				s.Fields = append(s.Fields, f)
				if r.peek() == ')' {
					r.pos++
					break
				}
				if err := r.sp(); err != nil {
					return nil, err
				}
			}
		default:
			return nil, r.errf("unknown section %q", s.Specifier)
		}
	} else if len(s.Part) > 0 && r.line[r.pos-1] == '.' {
		return nil, r.errf("section ends with a dot")
	}
	if err := r.expect(']'); err != nil {
		return nil, err
	}
	return s, nil
}

// ResponseName is the item's name as a FETCH response carries it (RFC
// 9051 section 7.5.2): BODY.PEEK answers as BODY, a partial as its
// origin octet only ("BODY[]<0>"), header field names as requested.
func (it FetchItem) ResponseName() string {
	if it.Section == nil {
		return it.Name
	}
	var b strings.Builder
	b.WriteString(it.Name)
	b.WriteByte('[')
	b.WriteString(it.Section.String())
	b.WriteByte(']')
	if it.Partial != nil {
		b.WriteByte('<')
		b.WriteString(strconv.FormatUint(uint64(it.Partial.Offset), 10))
		b.WriteByte('>')
	}
	return b.String()
}

// String is the section spec between the brackets, e.g.
// "1.2.HEADER.FIELDS (DATE FROM)".
func (s *Section) String() string {
	var b strings.Builder
	for i, p := range s.Part {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(strconv.FormatUint(uint64(p), 10))
	}
	if s.Specifier != "" {
		if len(s.Part) > 0 {
			b.WriteByte('.')
		}
		b.WriteString(s.Specifier)
	}
	if len(s.Fields) > 0 {
		b.WriteString(" (")
		for i, f := range s.Fields {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(astringText(f))
		}
		b.WriteByte(')')
	}
	return b.String()
}

// astringText renders s as an atom when it is one, else quoted; a field
// name with CR, LF or 8-bit octets cannot be a header name and is
// quoted with those octets replaced, as a section name cannot hold a
// literal on the response's own line without breaking it.
func astringText(s string) string {
	atom := s != ""
	for i := 0; i < len(s); i++ {
		// "]" is an ASTRING-CHAR but would end the section early for
		// a careless client parser; quote it.
		if !isAtomChar(s[i]) {
			atom = false
			break
		}
	}
	if atom && !equalFold(s, "NIL") {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c >= 0x7f:
			b.WriteByte('?')
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
