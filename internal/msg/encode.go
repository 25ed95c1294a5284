package msg

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// encodingVersion is the first byte of Marshal's output; Unmarshal refuses
// other versions, so that a change of layout is never misread.
const encodingVersion = 1

// Marshal encodes m compactly (varints and length-prefixed strings) for the
// store.
func (m *Message) Marshal() []byte {
	e := &encoder{b: make([]byte, 0, 256)}
	e.b = append(e.b, encodingVersion)
	e.message(m)
	return e.b
}

type encoder struct{ b []byte }

func (e *encoder) uint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) int(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) str(s string) {
	e.uint(uint64(len(s)))
	e.b = append(e.b, s...)
}

func (e *encoder) message(m *Message) {
	env := &m.Envelope
	e.str(env.Date)
	e.str(env.Subject)
	for _, l := range [][]Address{env.From, env.Sender, env.ReplyTo, env.To, env.Cc, env.Bcc} {
		e.uint(uint64(len(l)))
		for _, a := range l {
			e.str(a.Name)
			e.str(a.Adl)
			e.str(a.Mailbox)
			e.str(a.Host)
		}
	}
	e.str(env.InReplyTo)
	e.str(env.MessageID)
	e.part(&m.Part)
}

func (e *encoder) params(ps [][2]string) {
	e.uint(uint64(len(ps)))
	for _, kv := range ps {
		e.str(kv[0])
		e.str(kv[1])
	}
}

func (e *encoder) part(p *Part) {
	e.int(p.HeaderStart)
	e.int(p.BodyStart - p.HeaderStart)
	e.int(p.End - p.BodyStart)
	e.str(p.Type)
	e.str(p.Subtype)
	e.params(p.Params)
	e.str(p.ID)
	e.str(p.Description)
	e.str(p.Encoding)
	e.int(p.Lines)
	e.str(p.Disposition)
	e.params(p.DispositionParams)
	e.uint(uint64(len(p.Language)))
	for _, l := range p.Language {
		e.str(l)
	}
	e.str(p.Location)
	e.str(p.MD5)
	e.uint(uint64(len(p.Children)))
	for i := range p.Children {
		e.part(&p.Children[i])
	}
	if p.Message != nil {
		e.b = append(e.b, 1)
		e.message(p.Message)
	} else {
		e.b = append(e.b, 0)
	}
}

// ErrCorrupt is returned by Unmarshal for bytes Marshal did not make.
var ErrCorrupt = errors.New("msg: corrupt structure")

// Unmarshal decodes what Marshal encoded. It returns an error, never panics,
// on anything else.
func Unmarshal(b []byte) (*Message, error) {
	if len(b) == 0 || b[0] != encodingVersion {
		return nil, fmt.Errorf("%w: unknown version", ErrCorrupt)
	}
	d := &decoder{b: b[1:]}
	m := &Message{}
	d.message(m, 0)
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: trailing bytes", ErrCorrupt)
	}
	return m, nil
}

type decoder struct {
	b     []byte
	err   error
	parts int
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = ErrCorrupt
	}
	d.b = nil
}

func (d *decoder) uint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) int() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a length that cannot exceed what is left (each element takes at
// least one byte), so that garbage cannot ask for huge allocations.
func (d *decoder) count() int {
	n := d.uint()
	if n > uint64(len(d.b)) {
		d.fail()
		return 0
	}
	return int(n)
}

func (d *decoder) str() string {
	n := d.count()
	if d.err != nil {
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) message(m *Message, depth int) {
	if depth > MaxDepth+1 {
		d.fail()
		return
	}
	env := &m.Envelope
	env.Date = d.str()
	env.Subject = d.str()
	for _, l := range []*[]Address{&env.From, &env.Sender, &env.ReplyTo, &env.To, &env.Cc, &env.Bcc} {
		n := d.count()
		for i := 0; i < n && d.err == nil; i++ {
			*l = append(*l, Address{Name: d.str(), Adl: d.str(), Mailbox: d.str(), Host: d.str()})
		}
	}
	env.InReplyTo = d.str()
	env.MessageID = d.str()
	d.part(&m.Part, depth)
}

func (d *decoder) params() [][2]string {
	n := d.count()
	var out [][2]string
	for i := 0; i < n && d.err == nil; i++ {
		out = append(out, [2]string{d.str(), d.str()})
	}
	return out
}

func (d *decoder) part(p *Part, depth int) {
	d.parts++
	if depth > MaxDepth+1 || d.parts > MaxParts+1 {
		d.fail()
		return
	}
	p.HeaderStart = d.int()
	p.BodyStart = p.HeaderStart + d.int()
	p.End = p.BodyStart + d.int()
	if p.HeaderStart < 0 || p.BodyStart < p.HeaderStart || p.End < p.BodyStart {
		d.fail()
		return
	}
	p.Type = d.str()
	p.Subtype = d.str()
	p.Params = d.params()
	p.ID = d.str()
	p.Description = d.str()
	p.Encoding = d.str()
	p.Lines = d.int()
	p.Disposition = d.str()
	p.DispositionParams = d.params()
	n := d.count()
	for i := 0; i < n && d.err == nil; i++ {
		p.Language = append(p.Language, d.str())
	}
	p.Location = d.str()
	p.MD5 = d.str()
	n = d.count()
	for i := 0; i < n && d.err == nil; i++ {
		p.Children = append(p.Children, Part{})
		d.part(&p.Children[len(p.Children)-1], depth+1)
	}
	if d.err != nil || len(d.b) == 0 {
		d.fail()
		return
	}
	hasMsg := d.b[0]
	d.b = d.b[1:]
	switch hasMsg {
	case 0:
	case 1:
		p.Message = &Message{}
		d.message(p.Message, depth+1)
	default:
		d.fail()
	}
}
