package msg

import "strings"

// maxAddresses bounds the addresses read from one field.
const maxAddresses = 1000

// ParseAddressList reads an RFC 5322 address list (section 3.4) into IMAP
// address structures, leniently: what cannot be read is skipped, never an
// error. Display names are kept as written (encoded words not decoded: IMAP
// returns them so), unquoted, with whitespace runs made single spaces.
func ParseAddressList(s string) []Address {
	p := &addrParser{s: s}
	var out []Address
	for p.i < len(p.s) && len(out) < maxAddresses {
		p.skipCFWS()
		if p.i >= len(p.s) {
			break
		}
		if p.s[p.i] == ',' {
			p.i++
			continue
		}
		start := p.i
		out = p.address(out)
		if p.i == start {
			p.i++ // make progress on garbage
		}
	}
	return out
}

type addrParser struct {
	s string
	i int
}

// skipCFWS skips whitespace and comments.
func (p *addrParser) skipCFWS() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\r', '\n':
			p.i++
		case '(':
			depth := 0
			for p.i < len(p.s) {
				c := p.s[p.i]
				p.i++
				if c == '\\' {
					p.i++
				} else if c == '(' {
					depth++
				} else if c == ')' {
					depth--
					if depth == 0 {
						break
					}
				}
			}
		default:
			return
		}
	}
}

// word reads an atom (dots allowed, for obsolete phrases and local parts) or a
// quoted string; it returns the text and whether there was one.
func (p *addrParser) word() (string, bool) {
	p.skipCFWS()
	if p.i >= len(p.s) {
		return "", false
	}
	if p.s[p.i] == '"' {
		var b strings.Builder
		p.i++
		for p.i < len(p.s) {
			c := p.s[p.i]
			p.i++
			if c == '\\' && p.i < len(p.s) {
				b.WriteByte(p.s[p.i])
				p.i++
				continue
			}
			if c == '"' {
				break
			}
			b.WriteByte(c)
		}
		return b.String(), true
	}
	start := p.i
	for p.i < len(p.s) && !strings.ContainsRune("()<>[]:;@\\,\" \t\r\n", rune(p.s[p.i])) {
		p.i++
	}
	return p.s[start:p.i], p.i > start
}

// phrase reads words up to a special character.
func (p *addrParser) phrase() string {
	var words []string
	for {
		w, ok := p.word()
		if !ok {
			break
		}
		words = append(words, w)
	}
	return strings.Join(strings.Fields(strings.Join(words, " ")), " ")
}

func (p *addrParser) peek() byte {
	p.skipCFWS()
	if p.i >= len(p.s) {
		return 0
	}
	return p.s[p.i]
}

// address reads a mailbox or a group and appends it.
func (p *addrParser) address(out []Address) []Address {
	save := p.i
	name := p.phrase()
	switch p.peek() {
	case ':':
		// A group: "name: member, member;" (RFC 9051: start and end markers).
		p.i++
		out = append(out, Address{Mailbox: name})
		for p.i < len(p.s) && len(out) < maxAddresses {
			c := p.peek()
			if c == ';' {
				p.i++
				break
			}
			if c == ',' {
				p.i++
				continue
			}
			if c == 0 {
				break
			}
			start := p.i
			out = p.mailbox(out)
			if p.i == start {
				p.i++
			}
		}
		return append(out, Address{})
	case '<':
		return p.angle(out, name)
	}
	p.i = save
	return p.mailbox(out)
}

// mailbox reads "name <addr>" or a bare addr-spec.
func (p *addrParser) mailbox(out []Address) []Address {
	save := p.i
	name := p.phrase()
	if p.peek() == '<' {
		return p.angle(out, name)
	}
	p.i = save
	local, domain, ok := p.addrSpec()
	if !ok {
		return out
	}
	return append(out, Address{Mailbox: local, Host: domain})
}

// angle reads "<[@route:]local@domain>".
func (p *addrParser) angle(out []Address, name string) []Address {
	p.i++ // '<'
	adl := ""
	if p.peek() == '@' {
		// obs-route: "@a,@b:"
		start := p.i
		for p.i < len(p.s) && p.s[p.i] != ':' && p.s[p.i] != '>' {
			p.i++
		}
		if p.i < len(p.s) && p.s[p.i] == ':' {
			adl = strings.Join(strings.Fields(p.s[start:p.i]), "")
			p.i++
		} else {
			p.i = start
		}
	}
	local, domain, _ := p.addrSpec()
	for p.i < len(p.s) && p.s[p.i] != '>' {
		p.i++
	}
	if p.i < len(p.s) {
		p.i++
	}
	if local == "" && domain == "" && name == "" {
		return out
	}
	return append(out, Address{Name: name, Adl: adl, Mailbox: local, Host: domain})
}

// addrSpec reads local-part ["@" domain].
func (p *addrParser) addrSpec() (local, domain string, ok bool) {
	var parts []string
	for {
		w, got := p.word()
		if !got {
			break
		}
		parts = append(parts, w)
		if p.peek() != '.' {
			break
		}
		p.i++
	}
	local = strings.Join(parts, ".")
	if p.peek() == '@' {
		p.i++
		p.skipCFWS()
		if p.i < len(p.s) && p.s[p.i] == '[' {
			start := p.i
			for p.i < len(p.s) && p.s[p.i] != ']' {
				p.i++
			}
			if p.i < len(p.s) {
				p.i++
			}
			domain = p.s[start:p.i]
		} else {
			var labels []string
			for {
				w, got := p.word()
				if !got {
					break
				}
				labels = append(labels, w)
				if p.peek() != '.' {
					break
				}
				p.i++
			}
			domain = strings.Join(labels, ".")
		}
	}
	return local, domain, local != "" || domain != ""
}
