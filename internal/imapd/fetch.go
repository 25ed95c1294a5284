package imapd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"mime/quotedprintable"
	"slices"
	"strings"

	"github.com/posthorn/posthorn/internal/imapd/imapfetch"
	"github.com/posthorn/posthorn/internal/imapd/imapwire"
	"github.com/posthorn/posthorn/internal/msg"
	"github.com/posthorn/posthorn/internal/store"
)

// fetchPlan is what a FETCH needs from the store.
type fetchPlan struct {
	info    bool // INTERNALDATE, RFC822.SIZE, SAVEDATE: the message row
	meta    bool // ENVELOPE, BODYSTRUCTURE, BODY, sections: the stored structure
	bytes   bool // body sections: the message itself
	setSeen bool // a non-peek body item (RFC 9051 section 6.4.5)
	flags   bool // FLAGS asked for
	modseq  bool // MODSEQ asked for
	binary  bool // BINARY or BINARY.SIZE asked for
}

func planFetch(items []imapwire.FetchItem) fetchPlan {
	var p fetchPlan
	for _, it := range items {
		switch it.Name {
		case "FLAGS":
			p.flags = true
		case "MODSEQ":
			p.modseq = true
		case "UID", "EMAILID", "THREADID":
		case "INTERNALDATE", "RFC822.SIZE", "SAVEDATE":
			p.info = true
		case "ENVELOPE", "BODYSTRUCTURE":
			p.info, p.meta = true, true
		case "BODY":
			p.info, p.meta = true, true
			if it.Section != nil {
				p.bytes = true
				p.setSeen = p.setSeen || !it.Peek
			}
		case "BINARY", "BINARY.SIZE":
			p.info, p.meta, p.bytes, p.binary = true, true, true, true
			p.setSeen = p.setSeen || (it.Name == "BINARY" && !it.Peek)
		case "RFC822", "RFC822.TEXT":
			p.info, p.meta, p.bytes, p.setSeen = true, true, true, true
		case "RFC822.HEADER":
			p.info, p.meta, p.bytes = true, true, true
		}
	}
	return p
}

// cmdFetch answers FETCH and UID FETCH (RFC 9051 section 6.4.5), with
// CHANGEDSINCE and VANISHED (RFC 7162 sections 3.1.4 and 3.2.6).
func (c *session) cmdFetch(ctx context.Context, uid bool, a *imapwire.FetchCommand) result {
	v := c.sel
	if !uid && !c.validSeqSet(a.Seq) {
		return badResult("Invalid message sequence number")
	}
	if a.Vanished && !c.qresync {
		return badResult("VANISHED needs ENABLE QRESYNC")
	}
	if err := c.refresh(ctx, false); err != nil {
		return c.storeFailed("FETCH", err)
	}
	plan := planFetch(a.Items)
	if plan.modseq || a.ChangedSince > 0 {
		c.condstore = true // RFC 7162 section 3.1: these enable CONDSTORE
	}
	idx := c.resolve(a.Seq, uid)
	if a.ChangedSince > 0 {
		idx = slices.DeleteFunc(idx, func(i int) bool { return v.modseq[i] <= a.ChangedSince })
	}
	if a.Vanished {
		vanished, err := c.srv.Store.Vanished(ctx, v.mb.ID, a.ChangedSince)
		if err != nil {
			return c.storeFailed("FETCH", err)
		}
		vanished = slices.DeleteFunc(vanished, func(u uint32) bool { return !a.Seq.Contains(u, v.maxUID()) })
		if len(vanished) > 0 {
			c.w.Untagged().Atom("VANISHED (EARLIER) ").Atom(uidSetString(vanished)).CRLF()
		}
	}

	// Set \Seen before answering, so that the FLAGS sent are the new ones.
	seenSet := map[int]bool{}
	if plan.setSeen && !v.readOnly {
		var uids []uint32
		for _, i := range idx {
			if !v.gone[v.uids[i]] && !hasFlag(v.flags[i], store.FlagSeen) {
				uids = append(uids, v.uids[i])
			}
		}
		if len(uids) > 0 {
			changed, _, err := c.srv.Store.StoreFlags(ctx, v.mb.ID, uids, store.FlagsAdd, []string{store.FlagSeen}, 0)
			if err != nil {
				return c.storeFailed("FETCH", err)
			}
			for _, m := range changed {
				if i := v.index(m.UID); i >= 0 {
					v.flags[i], v.modseq[i] = m.Flags, m.ModSeq
					seenSet[i] = true
				}
			}
		}
	}

	var entries []*entry
	if plan.info {
		uids := make([]uint32, len(idx))
		for k, i := range idx {
			uids[k] = v.uids[i]
		}
		entries = v.box.entries(uids)
	}
	opts := imapfetch.Options{Rev2: c.rev2}
	missing, unknownCTE := false, false
	for k, i := range idx {
		var e *entry
		if plan.info {
			e = entries[k]
			if e == nil {
				// Expunged by another session and not told yet: what
				// is not in the view any more cannot be sent (RFC 9051
				// section 7.4.1 lets the server leave it out).
				missing = true
				continue
			}
		}
		var m *msg.Message
		structure := func() *msg.Message {
			if m == nil {
				if m = e.structure(); m == nil {
					m = c.reparse(ctx, v.mb.ID, e.uid)
				}
			}
			return m
		}
		if plan.binary && !binaryEncodingKnown(structure(), a.Items) {
			unknownCTE = true
			continue
		}
		if err := c.fetchOne(ctx, uid, i, a, plan, e, structure, seenSet[i], opts); err != nil {
			if errors.Is(err, errMessageGone) {
				missing = true
				continue
			}
			if errors.Is(err, errWrite) {
				c.state, c.ended = stateLogout, "write failed"
				return result{}
			}
			return c.storeFailed("FETCH", err)
		}
	}
	// Flags changed by others go out now; expunges only after UID FETCH.
	c.sync(ctx, uid)
	if unknownCTE {
		return no("UNKNOWN-CTE", "Cannot decode the content-transfer-encoding of a part")
	}
	if missing {
		return okCode("EXPUNGEISSUED", "Some messages were expunged meanwhile")
	}
	return ok("FETCH completed")
}

var (
	errMessageGone = errors.New("message expunged")
	errWrite       = errors.New("write failed")
)

// reparse parses a message whose stored structure is missing or broken.
func (c *session) reparse(ctx context.Context, mailboxID int64, uid uint32) *msg.Message {
	r, err := c.srv.Store.OpenMessage(ctx, mailboxID, uid)
	if err != nil {
		return &msg.Message{Part: msg.Part{Type: "text", Subtype: "plain", Encoding: "7bit"}}
	}
	defer r.Close()
	m, _ := msg.Parse(r, r.Size())
	return m
}

// fetchOne writes "* n FETCH (...)" for the message at view index i.
func (c *session) fetchOne(ctx context.Context, uid bool, i int, a *imapwire.FetchCommand, plan fetchPlan,
	e *entry, structure func() *msg.Message, seenSet bool, opts imapfetch.Options) error {
	v := c.sel
	var body store.MessageReader
	if plan.bytes {
		var err error
		body, err = c.srv.Store.OpenMessage(ctx, v.mb.ID, v.uids[i])
		if errors.Is(err, store.ErrNotFound) {
			return errMessageGone
		}
		if err != nil {
			return err
		}
		defer body.Close()
	}
	w := c.w
	w.Untagged().Number(uint64(i + 1)).Atom(" FETCH (")
	sep := false
	item := func(name string) {
		if sep {
			w.SP()
		}
		sep = true
		w.Atom(name)
	}
	if uid {
		item("UID ")
		w.Number(uint64(v.uids[i]))
	}
	for _, it := range a.Items {
		switch it.Name {
		case "UID":
			if !uid {
				item("UID ")
				w.Number(uint64(v.uids[i]))
			}
		case "FLAGS":
			item("FLAGS ")
			w.Flags(v.flags[i])
		case "MODSEQ":
			item("MODSEQ (")
			w.Number(v.modseq[i]).Atom(")")
		case "INTERNALDATE":
			item("INTERNALDATE ")
			w.String(e.internalDate.Format(imapDate))
		case "SAVEDATE":
			item("SAVEDATE ")
			if e.saveDate.IsZero() {
				w.Nil()
			} else {
				w.String(e.saveDate.Format(imapDate))
			}
		case "RFC822.SIZE":
			item("RFC822.SIZE ")
			w.Number(uint64(max(e.size, 0)))
		case "EMAILID", "THREADID":
			// OBJECTID (RFC 8474) is not advertised.
			item(it.Name + " NIL")
		case "ENVELOPE":
			item("ENVELOPE ")
			w.Raw(e.rendered(false, c.utf8, c.rev2, structure))
		case "BODYSTRUCTURE":
			item("BODYSTRUCTURE ")
			w.Raw(e.rendered(true, c.utf8, c.rev2, structure))
		case "BODY", "RFC822", "RFC822.HEADER", "RFC822.TEXT":
			if it.Name == "BODY" && it.Section == nil {
				item("BODY ")
				imapfetch.Body(w, &structure().Part, opts)
				continue
			}
			sec, name := it.Section, it.ResponseName()
			switch it.Name {
			case "RFC822":
				sec = &imapwire.Section{}
			case "RFC822.HEADER":
				sec = &imapwire.Section{Specifier: "HEADER"}
			case "RFC822.TEXT":
				sec = &imapwire.Section{Specifier: "TEXT"}
			}
			item(name + " ")
			if err := writeSection(w, body, structure(), sec, it.Partial); err != nil {
				return err
			}
		case "BINARY", "BINARY.SIZE":
			if err := c.writeBinary(w, item, body, structure(), it); err != nil {
				return err
			}
		}
	}
	if seenSet && !plan.flags {
		// RFC 9051 section 6.4.5: when \Seen is set by the fetch, the
		// new flags are sent.
		item("FLAGS ")
		w.Flags(v.flags[i])
	}
	if !plan.modseq && c.condstore && a.ChangedSince > 0 {
		item("MODSEQ (")
		w.Number(v.modseq[i]).Atom(")")
	}
	w.Atom(")").CRLF()
	if w.Err() != nil {
		return errWrite
	}
	return nil
}

// imapDate is the date-time format of INTERNALDATE (RFC 9051 section 9).
const imapDate = "02-Jan-2006 15:04:05 -0700"

// sectionRange finds the octets a section names (RFC 9051 section
// 6.4.5). ok is false when the message has no such part.
func sectionRange(m *msg.Message, size int64, sec *imapwire.Section) (start, end int64, headerOnly, ok bool) {
	if len(sec.Part) == 0 {
		switch sec.Specifier {
		case "":
			return 0, size, false, true
		case "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT":
			return m.Part.HeaderStart, m.Part.BodyStart, true, true
		case "TEXT":
			return m.Part.BodyStart, size, false, true
		}
		return 0, 0, false, false
	}
	path := make([]int, len(sec.Part))
	for k, n := range sec.Part {
		path[k] = int(n)
	}
	p, found := m.Section(path)
	if !found {
		return 0, 0, false, false
	}
	switch sec.Specifier {
	case "":
		return p.BodyStart, p.End, false, true
	case "MIME":
		return p.HeaderStart, p.BodyStart, true, true
	case "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT":
		if p.Message == nil {
			return 0, 0, false, false
		}
		return p.Message.Part.HeaderStart, p.Message.Part.BodyStart, true, true
	case "TEXT":
		if p.Message == nil {
			return 0, 0, false, false
		}
		return p.Message.Part.BodyStart, p.Message.Part.End, false, true
	}
	return 0, 0, false, false
}

// maxHeader bounds a header read into memory for HEADER.FIELDS.
const maxHeader = 1 << 20

// writeSection writes a body section's data: a literal (streamed from
// the message), "" for a partial past the end, or NIL for a part that
// does not exist.
func writeSection(w *imapwire.Writer, body store.MessageReader, m *msg.Message, sec *imapwire.Section, partial *imapwire.Partial) error {
	size := body.Size()
	start, end, _, found := sectionRange(m, size, sec)
	if !found {
		w.Nil()
		return nil
	}
	start, end = clamp(start, size), clamp(end, size)
	if end < start {
		end = start
	}
	if sec.Specifier == "HEADER.FIELDS" || sec.Specifier == "HEADER.FIELDS.NOT" {
		n := min(end-start, maxHeader)
		hdr := make([]byte, n)
		if _, err := body.ReadAt(hdr, start); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		out := filterHeader(hdr, sec.Fields, sec.Specifier == "HEADER.FIELDS.NOT")
		out = applyPartial(out, partial)
		w.Literal(out)
		return nil
	}
	if partial != nil {
		o := start + int64(partial.Offset)
		if o > end {
			o = end
		}
		e := end
		if partial.Count > 0 && o+int64(partial.Count) < e {
			e = o + int64(partial.Count)
		}
		start, end = o, e
	}
	w.LiteralFrom(io.NewSectionReader(body, start, end-start), end-start, false)
	if w.Err() != nil {
		return errWrite
	}
	return nil
}

func clamp(n, size int64) int64 {
	return max(0, min(n, size))
}

func applyPartial(b []byte, p *imapwire.Partial) []byte {
	if p == nil {
		return b
	}
	o := min(int(p.Offset), len(b))
	b = b[o:]
	if p.Count > 0 && int(p.Count) < len(b) {
		b = b[:p.Count]
	}
	return b
}

// filterHeader keeps (or, with not, drops) the fields named, with their
// continuation lines, and ends with the blank line (RFC 9051 section
// 6.4.5: the subset is itself a header).
func filterHeader(hdr []byte, names []string, not bool) []byte {
	var out []byte
	keep := false
	for len(hdr) > 0 {
		line := hdr
		if i := bytes.IndexByte(hdr, '\n'); i >= 0 {
			line = hdr[:i+1]
		}
		hdr = hdr[len(line):]
		trimmed := bytes.TrimRight(line, "\r\n")
		if len(trimmed) == 0 {
			break // the blank line that ends the header
		}
		if line[0] != ' ' && line[0] != '\t' {
			name := trimmed
			if j := bytes.IndexByte(trimmed, ':'); j >= 0 {
				name = bytes.TrimRight(trimmed[:j], " \t")
			}
			listed := false
			for _, n := range names {
				if strings.EqualFold(n, string(name)) {
					listed = true
					break
				}
			}
			keep = listed != not
		}
		if keep {
			out = append(out, trimmed...)
			out = append(out, '\r', '\n')
		}
	}
	return append(out, '\r', '\n')
}

// writeBinary answers BINARY[section] and BINARY.SIZE[section] (RFC 3516):
// the part's content with its transfer encoding undone.
func (c *session) writeBinary(w *imapwire.Writer, item func(string), body store.MessageReader, m *msg.Message, it imapwire.FetchItem) error {
	sec := it.Section
	var p *msg.Part
	if len(sec.Part) == 0 {
		p = &m.Part
	} else {
		path := make([]int, len(sec.Part))
		for k, n := range sec.Part {
			path[k] = int(n)
		}
		var found bool
		if p, found = m.Section(path); !found {
			item(it.ResponseName() + " NIL")
			return nil
		}
	}
	size := body.Size()
	start, end := clamp(p.BodyStart, size), clamp(p.End, size)
	if len(sec.Part) == 0 {
		// BINARY[] is the whole message, with nothing to decode.
		start, end = 0, size
	}
	raw := io.NewSectionReader(body, start, max(end-start, 0))
	var dec io.Reader = raw
	if len(sec.Part) > 0 {
		switch strings.ToLower(p.Encoding) {
		case "base64":
			dec = base64.NewDecoder(base64.RawStdEncoding, &base64Filter{r: bufio.NewReader(raw)})
		case "quoted-printable":
			dec = quotedprintable.NewReader(raw)
		}
	}
	data, err := io.ReadAll(io.LimitReader(dec, c.srv.AppendLimit*2))
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		// A broken encoding gives what could be decoded.
		_ = err
	}
	if it.Name == "BINARY.SIZE" {
		item(it.ResponseName() + " ")
		w.Number(uint64(len(data)))
		return nil
	}
	data = applyPartial(data, it.Partial)
	item(it.ResponseName() + " ")
	if bytes.IndexByte(data, 0) >= 0 {
		w.Literal8(data)
	} else {
		w.Literal(data)
	}
	return nil
}

// binaryEncodingKnown reports whether every BINARY item names a part whose
// transfer encoding the server can undo (RFC 3516 section 4.3: else NO
// [UNKNOWN-CTE], before any of the answer is written).
func binaryEncodingKnown(m *msg.Message, items []imapwire.FetchItem) bool {
	for _, it := range items {
		if (it.Name != "BINARY" && it.Name != "BINARY.SIZE") || len(it.Section.Part) == 0 {
			continue
		}
		path := make([]int, len(it.Section.Part))
		for k, n := range it.Section.Part {
			path[k] = int(n)
		}
		p, found := m.Section(path)
		if !found {
			continue
		}
		switch strings.ToLower(p.Encoding) {
		case "", "7bit", "8bit", "binary", "base64", "quoted-printable":
		default:
			return false
		}
	}
	return true
}

// base64Filter drops the octets that are not base64 (line ends, spaces),
// which RFC 2045 section 6.8 says a decoder ignores.
type base64Filter struct{ r *bufio.Reader }

func (f *base64Filter) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		b, err := f.r.ReadByte()
		if err != nil {
			if n > 0 {
				return n, nil
			}
			return 0, err
		}
		if b == '=' {
			continue // padding: the decoder needs none (see below)
		}
		if 'A' <= b && b <= 'Z' || 'a' <= b && b <= 'z' || '0' <= b && b <= '9' || b == '+' || b == '/' {
			p[n] = b
			n++
		}
	}
	return n, nil
}
