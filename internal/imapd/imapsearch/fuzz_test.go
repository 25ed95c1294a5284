package imapsearch

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/imapd/imapwire"
	"github.com/posthorn/posthorn/internal/store"
)

// keyGen builds a search tree from fuzz bytes.
type keyGen struct {
	b []byte
}

func (g *keyGen) byte() byte {
	if len(g.b) == 0 {
		return 0
	}
	c := g.b[0]
	g.b = g.b[1:]
	return c
}

func (g *keyGen) str() string {
	n := int(g.byte() % 8)
	if n > len(g.b) {
		n = len(g.b)
	}
	s := string(g.b[:n])
	g.b = g.b[n:]
	return s
}

var fuzzOps = []string{"AND", "OR", "NOT", "ALL", "ANSWERED", "SEEN", "UNSEEN", "NEW", "OLD", "RECENT",
	"KEYWORD", "BEFORE", "ON", "SENTSINCE", "SAVEDON", "LARGER", "SMALLER", "SEQ", "UID", "MODSEQ",
	"OLDER", "YOUNGER", "FROM", "TO", "BCC", "SUBJECT", "HEADER", "BODY", "TEXT", "EMAILID", "SAVEDATESUPPORTED"}

func (g *keyGen) key(depth int) *imapwire.SearchKey {
	op := fuzzOps[int(g.byte())%len(fuzzOps)]
	if depth > 5 && (op == "AND" || op == "OR" || op == "NOT") {
		op = "ALL"
	}
	k := &imapwire.SearchKey{Op: op}
	switch op {
	case "AND":
		for i := int(g.byte() % 4); i >= 0; i-- {
			k.Children = append(k.Children, g.key(depth+1))
		}
	case "OR":
		k.Children = []*imapwire.SearchKey{g.key(depth + 1), g.key(depth + 1)}
	case "NOT":
		k.Children = []*imapwire.SearchKey{g.key(depth + 1)}
	case "KEYWORD", "FROM", "TO", "BCC", "SUBJECT", "BODY", "TEXT", "EMAILID":
		k.Str, k.Flag = g.str(), g.str()
	case "HEADER":
		k.Field, k.Str = g.str(), g.str()
	case "BEFORE", "ON", "SENTSINCE", "SAVEDON":
		k.Date = time.Date(1990+int(g.byte()%40), time.Month(1+g.byte()%12), 1+int(g.byte()%28), 0, 0, 0, 0, time.UTC)
	case "LARGER", "SMALLER", "MODSEQ", "OLDER", "YOUNGER":
		k.Num = uint64(g.byte()) << (g.byte() % 64)
	case "SEQ", "UID":
		if g.byte()%5 == 0 {
			k.Seq.Saved = true
		} else {
			k.Seq.Ranges = []imapwire.SeqRange{{Start: uint32(g.byte() % 4), Stop: uint32(g.byte() % 4)}}
		}
	}
	return k
}

func FuzzSearch(f *testing.F) {
	for _, raw := range searchMessages {
		f.Add([]byte{0, 2, 27, 3, 'c', 'a', 'f', 1, 25, 2, 'r', 'e', 28, 1, 'x'}, raw)
	}
	f.Add([]byte{27, 1, 'a'}, crlf("Content-Type: multipart/mixed; boundary=x\n\n--x\nContent-Type: message/rfc822\n\n--x--\n"))
	f.Add([]byte{28, 2, 'q', 'p'}, crlf("Content-Type: text/plain; charset=koi8-r\nContent-Transfer-Encoding: quoted-printable\n\n=E1=\n=ZZ=\n"))
	f.Fuzz(func(t *testing.T, keyBytes, raw []byte) {
		g := &keyGen{b: keyBytes}
		key := &imapwire.SearchKey{Op: "AND", Children: []*imapwire.SearchKey{g.key(0)}}
		infos := []store.MessageInfo{
			{UID: 1, Flags: []string{`\Seen`}, InternalDate: time.Unix(1e9, 0), Size: int64(len(raw))},
			{UID: 2, InternalDate: time.Unix(2e9, 0), Size: int64(len(raw)) + 1},
		}
		raws := [][]byte{raw, append(crlf("Subject: Re: x\nReferences: <a@b> <c@d>\nMessage-ID: <a@b>\n\n"), raw...)}
		msgs, src := mailbox(raws, infos, map[uint32]bool{1: true})
		env := Env{Now: time.Unix(3e9, 0), MaxSeq: 2, MaxUID: 2, Saved: []uint32{2}}
		found, err := Search(context.Background(), key, msgs, src, env)
		if err != nil {
			t.Fatalf("search: %v", err)
		}
		for _, i := range found {
			if i < 0 || i >= len(msgs) {
				t.Fatalf("index %d out of range", i)
			}
		}
		all := []int{0, 1}
		crit := []imapwire.SortCriterion{{Key: "SUBJECT"}, {Key: "DATE", Reverse: true}, {Key: "FROM"}, {Key: "DISPLAYTO"}}
		if s, err := Sort(context.Background(), crit, msgs, all, src); err != nil || len(s) != 2 {
			t.Fatalf("sort: %v %v", s, err)
		}
		for _, alg := range []string{"REFERENCES", "ORDEREDSUBJECT"} {
			th, err := Thread(context.Background(), alg, msgs, all, src)
			if err != nil {
				t.Fatalf("thread: %v", err)
			}
			_ = formatThreads(th, func(i int) uint32 { return uint32(i + 1) })
		}
		// A cancelled context stops every one of them.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := Search(ctx, key, msgs, src, env); !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled search: %v", err)
		}
		if _, err := Sort(ctx, crit, msgs, all, src); !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled sort: %v", err)
		}
		if _, err := Thread(ctx, "REFERENCES", msgs, all, src); !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled thread: %v", err)
		}
	})
}
