// Package imapsearch evaluates the IMAP SEARCH (RFC 9051 section 6.4.4),
// SORT and THREAD (RFC 5256) commands over the messages of the selected
// mailbox, from what the store keeps of each (flags, dates, size, the
// structure parsed at delivery) and, only for the keys that need them, the
// message bytes.
//
// The search tree is compiled once: strings are case-folded in advance
// and the operands of AND and OR are ordered cheapest first, so a message
// that a flag, size or UID key rules out is never opened. Body text is
// decoded (base64, quoted-printable, charset) and searched as it streams,
// chunk by chunk, so a large message is never held in memory.
package imapsearch

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/imapd/imapwire"
	"github.com/posthorn/posthorn/internal/msg"
	"github.com/posthorn/posthorn/internal/store"
)

// Message is one message of the selected mailbox as the session numbers it.
type Message struct {
	Seq    uint32
	Info   *store.MessageInfo // Meta may be nil: then Source.Structure is asked
	Recent bool               // for RECENT/NEW/OLD of IMAP4rev1 clients
}

// Source gives what some keys need beyond Info. Calls are made from one
// goroutine.
type Source interface {
	Structure(m *Message) (*msg.Message, error)   // the stored structure
	Open(m *Message) (store.MessageReader, error) // the raw bytes (BODY, TEXT, HEADER...)
}

// Env is the state of the session a search depends on.
type Env struct {
	Now    time.Time // for OLDER/YOUNGER (RFC 5032)
	MaxSeq uint32    // "*" in sequence sets of SEQ keys
	MaxUID uint32    // "*" in UID keys
	Saved  []uint32  // UIDs of the SEARCHRES result "$" (RFC 5182); nil: none saved (then $ matches nothing)
}

// ErrBadCharset is returned by CheckCharset for a charset other than UTF-8
// and US-ASCII: the session answers NO [BADCHARSET (UTF-8 US-ASCII)]
// (RFC 9051 section 6.4.4).
var ErrBadCharset = errors.New("imapsearch: unsupported charset")

// CheckCharset accepts "", UTF-8 and US-ASCII (any case), else
// ErrBadCharset. US-ASCII is a subset of UTF-8, so strings are searched the
// same way under both.
func CheckCharset(cs string) error {
	switch strings.ToUpper(cs) {
	case "", "UTF-8", "US-ASCII":
		return nil
	}
	return ErrBadCharset
}

// Search returns the indexes into msgs of the messages matching key (an AND
// tree as imapwire parses it), in order. ctx cancellation stops it.
func Search(ctx context.Context, key *imapwire.SearchKey, msgs []Message, src Source, env Env) ([]int, error) {
	if key == nil {
		return nil, errors.New("imapsearch: no search key")
	}
	n, err := compile(key, env, 0)
	if err != nil {
		return nil, err
	}
	e := &evaluator{ctx: ctx, src: src, env: env, saved: savedSet(env.Saved)}
	defer e.release()
	var out []int
	for i := range msgs {
		if i&63 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		e.reset(&msgs[i])
		ok, err := e.eval(n)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, i)
		}
	}
	return out, nil
}

func savedSet(uids []uint32) map[uint32]struct{} {
	if uids == nil {
		return nil
	}
	s := make(map[uint32]struct{}, len(uids))
	for _, u := range uids {
		s[u] = struct{}{}
	}
	return s
}

type op int

const (
	opAll op = iota
	opNone
	opAnd
	opOr
	opNot
	opFlag   // str: a system flag or keyword; Unicode case-insensitive
	opRecent // RECENT
	opNew    // RECENT and not \Seen
	opBefore // INTERNALDATE's day
	opOn
	opSince
	opSentBefore // Date: header's day
	opSentOn
	opSentSince
	opSavedBefore // SAVEDATE's day (RFC 8514)
	opSavedOn
	opSavedSince
	opLarger
	opSmaller
	opSeq
	opUID
	opModSeq
	opOlder // RFC 5032
	opYounger
	opEnvelope // needle in an envelope field (field: from, to, cc, bcc, subject)
	opHeader   // needle in a header field (field lower-case)
	opBody
	opText
)

// Costs order the operands of AND and OR: what needs only MessageInfo,
// then the structure, then the header bytes, then the body.
const (
	costInfo = iota
	costStructure
	costHeader
	costBody
)

// node is a compiled search key.
type node struct {
	op     op
	kids   []*node
	cost   int
	str    string // flag name, envelope or header field
	needle []byte // folded search string
	num    uint64
	day    civil
	dur    time.Duration
	seq    imapwire.SeqSet
}

// maxDepth bounds the recursion of compile and eval; imapwire already
// limits nesting, this only guards against a tree built another way.
const maxDepth = 1000

func compile(k *imapwire.SearchKey, env Env, depth int) (*node, error) {
	if k == nil {
		return nil, errors.New("imapsearch: empty search key")
	}
	if depth > maxDepth {
		return nil, errors.New("imapsearch: search key nested too deeply")
	}
	n := &node{}
	switch k.Op {
	case "AND", "OR", "NOT":
		switch {
		case k.Op == "OR" && len(k.Children) != 2, k.Op == "NOT" && len(k.Children) != 1:
			return nil, fmt.Errorf("imapsearch: %s with %d operands", k.Op, len(k.Children))
		}
		n.op = map[string]op{"AND": opAnd, "OR": opOr, "NOT": opNot}[k.Op]
		for _, c := range k.Children {
			cn, err := compile(c, env, depth+1)
			if err != nil {
				return nil, err
			}
			n.kids = append(n.kids, cn)
			n.cost = max(n.cost, cn.cost)
		}
		// Evaluating cheaper operands first does not change the result
		// of AND or OR, and spares the expensive ones wherever the
		// cheap ones decide.
		sort.SliceStable(n.kids, func(i, j int) bool { return n.kids[i].cost < n.kids[j].cost })
	case "ALL", "SAVEDATESUPPORTED":
		// SAVEDATESUPPORTED matches every message of a mailbox that keeps
		// save dates (RFC 8514 section 4): the store keeps them for all.
		n.op = opAll
	case "EMAILID", "THREADID":
		n.op = opNone // OBJECTID is not advertised: nothing matches
	case "ANSWERED", "DELETED", "DRAFT", "FLAGGED", "SEEN":
		n.op, n.str = opFlag, `\`+k.Op[:1]+strings.ToLower(k.Op[1:])
	case "UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED", "UNSEEN":
		f := k.Op[2:]
		n.op, n.kids = opNot, []*node{{op: opFlag, str: `\` + f[:1] + strings.ToLower(f[1:])}}
	case "KEYWORD":
		n.op, n.str = opFlag, k.Flag
	case "UNKEYWORD":
		n.op, n.kids = opNot, []*node{{op: opFlag, str: k.Flag}}
	case "RECENT":
		n.op = opRecent
	case "NEW":
		n.op = opNew
	case "OLD":
		n.op, n.kids = opNot, []*node{{op: opRecent}}
	case "BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE", "SAVEDBEFORE", "SAVEDON", "SAVEDSINCE":
		n.op = map[string]op{
			"BEFORE": opBefore, "ON": opOn, "SINCE": opSince,
			"SENTBEFORE": opSentBefore, "SENTON": opSentOn, "SENTSINCE": opSentSince,
			"SAVEDBEFORE": opSavedBefore, "SAVEDON": opSavedOn, "SAVEDSINCE": opSavedSince,
		}[k.Op]
		n.day = civilTime(k.Date)
		if strings.HasPrefix(k.Op, "SENT") {
			n.cost = costStructure
		}
	case "LARGER":
		n.op, n.num = opLarger, k.Num
	case "SMALLER":
		n.op, n.num = opSmaller, k.Num
	case "SEQ":
		n.op, n.seq = opSeq, k.Seq
	case "UID":
		n.op, n.seq = opUID, k.Seq
	case "MODSEQ":
		// The entry name only narrows which flag's MODSEQ is meant; the
		// store keeps one per message, which is the largest of all entries
		// (RFC 7162 section 3.1.5), so it is ignored.
		n.op, n.num = opModSeq, k.Num
	case "OLDER", "YOUNGER":
		n.op = opOlder
		if k.Op == "YOUNGER" {
			n.op = opYounger
		}
		n.dur = time.Duration(min(k.Num, uint64(1<<62)/uint64(time.Second))) * time.Second
	case "FROM", "TO", "CC", "BCC", "SUBJECT":
		n.op, n.str, n.cost = opEnvelope, strings.ToLower(k.Op), costStructure
		n.needle = []byte(foldString(k.Str))
	case "HEADER":
		n.op, n.str, n.cost = opHeader, k.Field, costHeader
		n.needle = []byte(foldString(k.Str))
	case "BODY", "TEXT":
		n.op, n.cost = opBody, costBody
		if k.Op == "TEXT" {
			n.op = opText
		}
		n.needle = []byte(foldString(k.Str))
	default:
		return nil, fmt.Errorf("imapsearch: unknown search key %s", k.Op)
	}
	for _, c := range n.kids {
		n.cost = max(n.cost, c.cost)
	}
	return n, nil
}

// evaluator holds what has been loaded of the current message, so that
// several keys share one structure decode and one open.
type evaluator struct {
	ctx   context.Context
	src   Source
	env   Env
	saved map[uint32]struct{}

	m        *Message
	st       *msg.Message
	stErr    error
	stDone   bool
	r        store.MessageReader
	rErr     error
	rDone    bool
	hdr      []byte // the top-level raw header, when hdrDone
	hdrDone  bool
	sent     civil // sentDay's result, when sentDone
	sentDone bool

	hbuf    []byte // storage for hdr
	scratch []byte
	sc      scanner
}

func (e *evaluator) reset(m *Message) {
	e.closeReader()
	e.m = m
	e.st, e.stErr, e.stDone = nil, nil, false
	e.hdr, e.hdrDone = nil, false
	e.sentDone = false
}

func (e *evaluator) closeReader() {
	if e.r != nil {
		e.r.Close()
	}
	e.r, e.rErr, e.rDone = nil, nil, false
}

func (e *evaluator) release() { e.closeReader() }

// structure returns the current message's parsed structure.
func (e *evaluator) structure() (*msg.Message, error) {
	if !e.stDone {
		e.stDone = true
		e.st, e.stErr = structureOf(e.m, e.src)
	}
	return e.st, e.stErr
}

// structureOf decodes Info.Meta, or asks src when there is none (or it
// does not decode).
func structureOf(m *Message, src Source) (*msg.Message, error) {
	if m.Info != nil && len(m.Info.Meta) > 0 {
		if st, err := msg.Unmarshal(m.Info.Meta); err == nil {
			return st, nil
		}
	}
	if src == nil {
		return nil, fmt.Errorf("imapsearch: no structure for message %d", m.Seq)
	}
	st, err := src.Structure(m)
	if err != nil {
		return nil, fmt.Errorf("imapsearch: structure of message %d: %w", m.Seq, err)
	}
	if st == nil {
		return nil, fmt.Errorf("imapsearch: no structure for message %d", m.Seq)
	}
	return st, nil
}

func (e *evaluator) reader() (store.MessageReader, error) {
	if !e.rDone {
		e.rDone = true
		if e.src == nil {
			e.rErr = fmt.Errorf("imapsearch: cannot open message %d", e.m.Seq)
		} else if e.r, e.rErr = e.src.Open(e.m); e.rErr != nil {
			e.rErr = fmt.Errorf("imapsearch: open message %d: %w", e.m.Seq, e.rErr)
		}
	}
	return e.r, e.rErr
}

// header returns the raw top-level header.
func (e *evaluator) header() ([]byte, error) {
	if e.hdrDone {
		return e.hdr, nil
	}
	st, err := e.structure()
	if err != nil {
		return nil, err
	}
	r, err := e.reader()
	if err != nil {
		return nil, err
	}
	e.hbuf, err = readHeader(r, &st.Part, e.hbuf)
	if err != nil {
		return nil, fmt.Errorf("imapsearch: read message %d: %w", e.m.Seq, err)
	}
	e.hdr, e.hdrDone = e.hbuf, true
	return e.hdr, nil
}

func (e *evaluator) info() *store.MessageInfo {
	if e.m.Info == nil {
		return &store.MessageInfo{}
	}
	return e.m.Info
}

func (e *evaluator) eval(n *node) (bool, error) {
	in := e.info()
	switch n.op {
	case opAll:
		return true, nil
	case opNone:
		return false, nil
	case opAnd:
		for _, k := range n.kids {
			ok, err := e.eval(k)
			if err != nil || !ok {
				return false, err
			}
		}
		return true, nil
	case opOr:
		for _, k := range n.kids {
			ok, err := e.eval(k)
			if err != nil || ok {
				return ok, err
			}
		}
		return false, nil
	case opNot:
		ok, err := e.eval(n.kids[0])
		return !ok && err == nil, err
	case opFlag:
		for _, f := range in.Flags {
			if strings.EqualFold(f, n.str) {
				return true, nil
			}
		}
		return false, nil
	case opRecent:
		return e.m.Recent, nil
	case opNew:
		return e.m.Recent && !in.HasFlag(`\Seen`), nil
	case opBefore, opOn, opSince:
		return compareDay(n.op-opBefore, civilTime(in.InternalDate), n.day), nil
	case opSavedBefore, opSavedOn, opSavedSince:
		if in.SaveDate.IsZero() {
			return false, nil // no save date known (RFC 8514 section 4)
		}
		return compareDay(n.op-opSavedBefore, civilTime(in.SaveDate), n.day), nil
	case opSentBefore, opSentOn, opSentSince:
		d, err := e.sentDay()
		if err != nil {
			return false, err
		}
		return compareDay(n.op-opSentBefore, d, n.day), nil
	case opLarger:
		return in.Size > 0 && uint64(in.Size) > n.num, nil
	case opSmaller:
		return in.Size >= 0 && uint64(in.Size) < n.num, nil
	case opSeq:
		if n.seq.Saved {
			return e.inSaved(in.UID), nil
		}
		return n.seq.Contains(e.m.Seq, e.env.MaxSeq), nil
	case opUID:
		if n.seq.Saved {
			return e.inSaved(in.UID), nil
		}
		return n.seq.Contains(in.UID, e.env.MaxUID), nil
	case opModSeq:
		return in.ModSeq >= n.num, nil
	case opOlder:
		return !in.InternalDate.After(e.env.Now.Add(-n.dur)), nil
	case opYounger:
		return in.InternalDate.After(e.env.Now.Add(-n.dur)), nil
	case opEnvelope:
		return e.envelopeMatch(n)
	case opHeader:
		return e.headerMatch(n)
	case opBody, opText:
		return e.bodyMatch(n)
	}
	return false, fmt.Errorf("imapsearch: bad node %d", n.op)
}

// compareDay applies BEFORE (0), ON (1) or SINCE (2) to a message's day.
func compareDay(which op, msgDay, key civil) bool {
	switch which {
	case 0:
		return msgDay < key
	case 1:
		return msgDay == key
	}
	return msgDay >= key
}

func (e *evaluator) inSaved(uid uint32) bool {
	_, ok := e.saved[uid]
	return ok
}

// sentDay is the day of the Date: header as written, disregarding time
// and zone (RFC 9051 section 6.4.4, SENTBEFORE); without a readable Date:
// the INTERNALDATE's day, as RFC 5256 section 2.2 does for SORT.
func (e *evaluator) sentDay() (civil, error) {
	if e.sentDone {
		return e.sent, nil
	}
	st, err := e.structure()
	if err != nil {
		return 0, err
	}
	if d, ok := parseSentDate(st.Envelope.Date); ok {
		e.sent = civilOf(d.year, time.Month(d.month), d.day)
	} else {
		e.sent = civilTime(e.info().InternalDate)
	}
	e.sentDone = true
	return e.sent, nil
}

func (e *evaluator) envelopeMatch(n *node) (bool, error) {
	st, err := e.structure()
	if err != nil {
		return false, err
	}
	if len(n.needle) == 0 {
		return true, nil
	}
	env := &st.Envelope
	var text string
	switch n.str {
	case "subject":
		text = decodeHeader(env.Subject)
	case "from":
		text = addressText(env.From)
	case "to":
		text = addressText(env.To)
	case "cc":
		text = addressText(env.Cc)
	case "bcc":
		text = addressText(env.Bcc)
	}
	return containsFold(text, n.needle), nil
}

// headerMatch: HEADER field string (RFC 9051 section 6.4.4) over every
// occurrence of the field, decoded; an empty string matches any message
// that has the field.
func (e *evaluator) headerMatch(n *node) (bool, error) {
	h, err := e.header()
	if err != nil {
		return false, err
	}
	found := false
	e.scratch = eachField(h, e.scratch, func(name, val []byte) bool {
		if !strings.EqualFold(string(name), n.str) {
			return true
		}
		if len(n.needle) == 0 || containsFold(decodeHeader(string(val)), n.needle) {
			found = true
			return false
		}
		return true
	})
	return found, nil
}

func (e *evaluator) bodyMatch(n *node) (bool, error) {
	if len(n.needle) == 0 {
		return true, nil
	}
	st, err := e.structure()
	if err != nil {
		return false, err
	}
	if n.op == opText {
		h, err := e.header()
		if err != nil {
			return false, err
		}
		if e.headerText(h, n.needle) {
			return true, nil
		}
	}
	r, err := e.reader()
	if err != nil {
		return false, err
	}
	ok, err := e.sc.searchPart(e.ctx, r, &st.Part, n.needle, 0)
	if err != nil {
		return false, fmt.Errorf("imapsearch: read message %d: %w", e.m.Seq, err)
	}
	return ok, nil
}

// headerText searches the decoded fields of a raw header, each as
// "Name: value".
func (e *evaluator) headerText(h []byte, needle []byte) bool {
	found := false
	e.scratch = eachField(h, e.scratch, func(name, val []byte) bool {
		line := string(name) + ": " + decodeHeader(string(val))
		found = containsFold(line, needle)
		return !found
	})
	return found
}
