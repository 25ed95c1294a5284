package imapsearch

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/imapd/imapwire"
)

// ThreadNode is one message of a thread tree (named so because Go cannot
// have both a type and a function Thread in one package). Index is into the msgs given to
// the Thread function, -1 for a dummy parent (a message that is not among
// those threaded, RFC 5256 section 4: "((3)(5))").
type ThreadNode struct {
	Index    int
	Children []*ThreadNode
}

// tnode is a message (or a dummy) while threading.
type tnode struct {
	index   int // into msgs; -1 for a dummy
	parent  *tnode
	kids    []*tnode
	sent    time.Time
	seq     uint32
	subject string // folded base subject
	reply   bool   // the subject marks a reply or forward
	deleted bool
}

func (n *tnode) dummy() bool { return n.index < 0 }

func link(parent, child *tnode) {
	child.parent = parent
	parent.kids = append(parent.kids, child)
}

func (n *tnode) unlink() {
	p := n.parent
	if p == nil {
		return
	}
	for i, k := range p.kids {
		if k == n {
			p.kids = append(p.kids[:i], p.kids[i+1:]...)
			break
		}
	}
	n.parent = nil
}

// within reports whether a is b or a descendant of b.
func within(a, b *tnode) bool {
	for x := a; x != nil; x = x.parent {
		if x == b {
			return true
		}
	}
	return false
}

// sortKey is the node that stands for n when siblings are sorted: a dummy
// sorts by its first child (RFC 5256 section 4, REFERENCES steps 4 and 6).
func (n *tnode) sortKey() *tnode {
	if n.dummy() && len(n.kids) > 0 {
		return n.kids[0]
	}
	return n
}

// bySent sorts nodes by sent date, ties by sequence number (section 2.2).
func bySent(list []*tnode) {
	sort.SliceStable(list, func(i, j int) bool {
		a, b := list[i].sortKey(), list[j].sortKey()
		if c := a.sent.Compare(b.sent); c != 0 {
			return c < 0
		}
		return a.seq < b.seq
	})
}

// Thread builds threads over msgs[idx] with algorithm "REFERENCES" or
// "ORDEREDSUBJECT" (RFC 5256 sections 4 and 5).
func Thread(ctx context.Context, alg string, msgs []Message, idx []int, src Source) ([]*ThreadNode, error) {
	alg = strings.ToUpper(alg)
	if alg != "REFERENCES" && alg != "ORDEREDSUBJECT" {
		return nil, fmt.Errorf("imapsearch: unknown threading algorithm %s", alg)
	}
	// Message IDs go to the first message (lowest sequence number) that
	// has them: work in sequence order.
	order := append([]int(nil), idx...)
	for _, x := range order {
		if x < 0 || x >= len(msgs) {
			return nil, fmt.Errorf("imapsearch: index %d out of range", x)
		}
	}
	sort.SliceStable(order, func(i, j int) bool { return msgs[order[i]].Seq < msgs[order[j]].Seq })

	nodes := make([]*tnode, len(order))
	var ids, inReplyTo []string
	var refs [][]string
	if alg == "REFERENCES" {
		ids, inReplyTo, refs = make([]string, len(order)), make([]string, len(order)), make([][]string, len(order))
	}
	var hbuf []byte
	for p, x := range order {
		if p&63 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		m := &msgs[x]
		st, err := structureOf(m, src)
		if err != nil {
			return nil, err
		}
		n := &tnode{index: x, seq: m.Seq}
		var internal time.Time
		if m.Info != nil {
			internal = m.Info.InternalDate
		}
		n.sent = sentTime(st.Envelope.Date, internal)
		b, reply := baseSubject(st.Envelope.Subject)
		n.subject, n.reply = foldString(b), reply
		nodes[p] = n
		if alg != "REFERENCES" {
			continue
		}
		ids[p] = firstMsgID(st.Envelope.MessageID)
		inReplyTo[p] = firstMsgID(st.Envelope.InReplyTo)
		// References is not in the stored envelope: read the header.
		if src == nil {
			return nil, fmt.Errorf("imapsearch: cannot open message %d", m.Seq)
		}
		r, err := src.Open(m)
		if err != nil {
			return nil, fmt.Errorf("imapsearch: open message %d: %w", m.Seq, err)
		}
		hbuf, err = readHeader(r, &st.Part, hbuf)
		r.Close()
		if err != nil {
			return nil, fmt.Errorf("imapsearch: read message %d: %w", m.Seq, err)
		}
		if v, ok := findHeader(hbuf, "References"); ok {
			refs[p] = msgIDs(v, -1)
		}
	}
	var roots []*tnode
	if alg == "ORDEREDSUBJECT" {
		roots = orderedSubject(nodes)
	} else {
		roots = references(nodes, ids, inReplyTo, refs)
	}
	return toThreads(roots), nil
}

// orderedSubject: "The searched messages are sorted by base subject and
// then by the sent date. The messages are then split into separate
// threads, with each thread containing messages with the same base subject
// text. Finally, the threads are sorted by the sent date of the first
// message in the thread." The first message is the parent of the others.
func orderedSubject(nodes []*tnode) []*tnode {
	sorted := append([]*tnode(nil), nodes...)
	sort.SliceStable(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if a.subject != b.subject {
			return a.subject < b.subject
		}
		if c := a.sent.Compare(b.sent); c != 0 {
			return c < 0
		}
		return a.seq < b.seq
	})
	var roots []*tnode
	for i := 0; i < len(sorted); {
		head := sorted[i]
		j := i + 1
		for ; j < len(sorted) && sorted[j].subject == head.subject; j++ {
			link(head, sorted[j])
		}
		roots = append(roots, head)
		i = j
	}
	bySent(roots)
	return roots
}

// references is the REFERENCES algorithm of RFC 5256 section 4, steps 1
// to 6. nodes are in sequence order.
func references(nodes []*tnode, ids, inReplyTo []string, refs [][]string) []*tnode {
	byID := make(map[string]*tnode, len(nodes))
	var all []*tnode // every node, in creation order, for step 2
	get := func(id string) *tnode {
		if n := byID[id]; n != nil {
			return n
		}
		n := &tnode{index: -1}
		byID[id] = n
		all = append(all, n)
		return n
	}
	for p, n := range nodes {
		// The message's own node: a dummy made by an earlier reference
		// becomes this message; a missing or duplicate Message-ID gets a
		// node of its own that nothing can reference.
		cur := n
		if id := ids[p]; id != "" {
			if d := byID[id]; d == nil {
				byID[id] = n
				all = append(all, n)
			} else if d.dummy() {
				d.index, d.seq, d.sent, d.subject, d.reply = n.index, n.seq, n.sent, n.subject, n.reply
				cur = d
			} else {
				all = append(all, n)
			}
		} else {
			all = append(all, n)
		}
		r := refs[p]
		if len(r) == 0 && inReplyTo[p] != "" {
			r = []string{inReplyTo[p]}
		}
		if own := ids[p]; own != "" && byID[own] == cur {
			// A message that names itself as a reference would, read
			// literally, lose its parent in step 1.B (the link would be
			// a loop): its own ID is not a reference.
			r = dropID(r, own)
		}
		// (1)(A) Link the references in a chain, never changing an
		// existing parent and never making a loop.
		var prev *tnode
		for _, id := range r {
			c := get(id)
			if prev != nil && c.parent == nil && !within(prev, c) {
				link(prev, c)
			}
			prev = c
		}
		// (1)(B) The last reference is the message's parent.
		cur.unlink()
		if prev != nil && !within(prev, cur) {
			link(prev, cur)
		}
	}
	// (2) The parentless nodes are the first messages of the threads.
	var roots []*tnode
	for _, n := range all {
		if n.parent == nil {
			roots = append(roots, n)
		}
	}
	// (3) Prune dummies.
	roots = prune(roots, true)
	for _, n := range roots {
		n.parent = nil
	}
	// (4) Sort the top level by sent date, a dummy by its first child.
	for _, n := range roots {
		if n.dummy() {
			bySent(n.kids)
		}
	}
	bySent(roots)
	// (5)(A, B) The subject table: one thread per base subject, preferring
	// a dummy, then a message that is not a reply or forward.
	table := make(map[string]*tnode)
	for _, n := range roots {
		subj := n.sortKey().subject
		if subj == "" {
			continue
		}
		t := table[subj]
		if t == nil || !t.dummy() && (n.dummy() || t.sortKey().reply && !n.reply) {
			table[subj] = n
		}
	}
	// (5)(C) Merge the threads of one subject.
	merged := roots[:len(roots):len(roots)]
	for _, n := range roots {
		if n.parent != nil || n.deleted {
			continue // already merged under a dummy made for its subject
		}
		subj := n.sortKey().subject
		if subj == "" {
			continue
		}
		t := table[subj]
		if t == n {
			continue
		}
		switch {
		case t.dummy() && n.dummy():
			for _, k := range n.kids {
				link(t, k)
			}
			n.kids, n.deleted = nil, true
		case t.dummy():
			link(t, n)
		case n.reply && !n.dummy() && !t.reply:
			link(t, n)
		default:
			d := &tnode{index: -1}
			link(d, t)
			link(d, n)
			table[subj] = d
			merged = append(merged, d)
		}
	}
	roots = roots[:0:0]
	for _, n := range merged {
		if n.parent == nil && !n.deleted {
			roots = append(roots, n)
		}
	}
	// (6) Sort every set of siblings by sent date, children before
	// parents so that a dummy sorts by its first child.
	sortTree(roots)
	return roots
}

func dropID(refs []string, id string) []string {
	var out []string
	for _, r := range refs {
		if r != id {
			out = append(out, r)
		}
	}
	return out
}

// prune is step (3): a dummy without children goes, a dummy with children
// is replaced by them, except at the top level when it has more than one.
func prune(list []*tnode, top bool) []*tnode {
	var out []*tnode
	for _, n := range list {
		n.kids = prune(n.kids, false)
		for _, k := range n.kids {
			k.parent = n
		}
		switch {
		case !n.dummy():
			out = append(out, n)
		case len(n.kids) == 0:
		case !top || len(n.kids) == 1:
			out = append(out, n.kids...)
		default:
			out = append(out, n)
		}
	}
	return out
}

func sortTree(list []*tnode) {
	for _, n := range list {
		sortTree(n.kids)
	}
	bySent(list)
}

func toThreads(list []*tnode) []*ThreadNode {
	out := make([]*ThreadNode, 0, len(list))
	for _, n := range list {
		t := &ThreadNode{Index: n.index}
		if n.dummy() {
			t.Index = -1
		}
		if len(n.kids) > 0 {
			t.Children = toThreads(n.kids)
		}
		out = append(out, t)
	}
	return out
}

// firstMsgID is the first valid Message ID of a header value, normalised,
// or "".
func firstMsgID(v string) string {
	if ids := msgIDs(v, 1); len(ids) > 0 {
		return ids[0]
	}
	return ""
}

// msgIDs reads up to max (all when negative) msg-ids ("<" id-left "@"
// id-right ">", RFC 5322 section 3.6.4) from a header value, normalised as
// RFC 5256 section 4 demands: comments, whitespace, quoting and
// backslashes removed, so that <"a b"@x> and <a b@x> are one ID. What is
// not a msg-id (words, addresses after the ID in In-Reply-To) is skipped.
func msgIDs(v string, max int) []string {
	v = stripComments(v)
	var out []string
	for max != 0 {
		i := strings.IndexByte(v, '<')
		if i < 0 {
			break
		}
		v = v[i+1:]
		j := strings.IndexAny(v, "<>")
		if j < 0 {
			break
		}
		if v[j] == '<' {
			v = v[j:]
			continue
		}
		raw := v[:j]
		v = v[j+1:]
		var b strings.Builder
		for k := 0; k < len(raw); k++ {
			switch c := raw[k]; c {
			case '"', ' ', '\t', '\r', '\n':
			case '\\':
				if k+1 < len(raw) {
					k++
					b.WriteByte(raw[k])
				}
			default:
				b.WriteByte(c)
			}
		}
		id := b.String()
		at := strings.LastIndexByte(id, '@')
		if at <= 0 || at == len(id)-1 {
			continue
		}
		out = append(out, "<"+id+">")
		max--
	}
	return out
}

// FormatThreads writes the THREAD response data (RFC 5256 section 4,
// thread-list), for example "(2)(3 6 (4 23)(44 7 96))", with numbers from
// num(index) (the session gives sequence numbers or UIDs). It writes
// nothing for no threads; the session writes "* THREAD", then a space and
// this when there are threads.
func FormatThreads(w *imapwire.Writer, threads []*ThreadNode, num func(index int) uint32) *imapwire.Writer {
	for _, t := range threads {
		if t.Index < 0 && !hasMessage(t) {
			continue
		}
		w.Open()
		writeMembers(w, t, num)
		w.Close()
	}
	return w
}

// writeMembers writes thread-members or thread-nested for the thread
// starting at t: the chain of single children as numbers, then at a split
// each branch as a parenthesised thread-list.
func writeMembers(w *imapwire.Writer, t *ThreadNode, num func(index int) uint32) {
	first := true
	for {
		if t.Index >= 0 {
			if !first {
				w.SP()
			}
			w.Number(uint64(num(t.Index)))
			first = false
		}
		kids := t.Children[:0:0]
		for _, k := range t.Children {
			if k.Index >= 0 || hasMessage(k) {
				kids = append(kids, k)
			}
		}
		switch len(kids) {
		case 0:
			return
		case 1:
			t = kids[0]
			continue
		}
		if !first {
			w.SP()
		}
		for _, k := range kids {
			w.Open()
			writeMembers(w, k, num)
			w.Close()
		}
		return
	}
}

// hasMessage reports whether a thread holds any message (a dummy with no
// message below it is not written: "()" is not a thread-list).
func hasMessage(t *ThreadNode) bool {
	if t.Index >= 0 {
		return true
	}
	for _, k := range t.Children {
		if hasMessage(k) {
			return true
		}
	}
	return false
}
