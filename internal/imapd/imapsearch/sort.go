package imapsearch

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/imapd/imapwire"
	"github.com/posthorn/posthorn/internal/msg"
)

// baseSubject extracts the base subject of RFC 5256 section 2.1 from a raw
// Subject value, and reports whether the subject marks a reply or forward
// (section 4, REFERENCES: the extraction removed a subj-refwd, a "(fwd)"
// subj-trailer, or a subj-fwd-hdr and subj-fwd-trl).
func baseSubject(raw string) (string, bool) {
	// (1) Decode encoded words; tabs and continuations become spaces, runs
	// of spaces one space.
	s := collapseSpace(decodeHeader(raw))
	reply := false
	for {
		// (2) Remove subj-trailer ("(fwd)" / WSP) at the end, repeatedly.
		for {
			if strings.HasSuffix(s, " ") {
				s = s[:len(s)-1]
			} else if len(s) >= 5 && strings.EqualFold(s[len(s)-5:], "(fwd)") {
				s, reply = s[:len(s)-5], true
			} else {
				break
			}
		}
		// (3)-(5) Remove subj-leaders, and a leading subj-blob that leaves
		// a non-empty subj-base, until neither applies.
		for {
			if strings.HasPrefix(s, " ") {
				s = s[1:]
			} else if n := leaderLen(s); n > 0 {
				s, reply = s[n:], true
			} else if n := blobLen(s, 0); n > 0 && n < len(s) {
				// After step 2 and the blob's own trailing WSP, what is
				// left is empty or starts with NONWSP: a subj-base.
				s = s[n:]
			} else {
				break
			}
		}
		// (6) "[fwd:" ... "]" around the whole: unwrap and start again.
		if len(s) >= 6 && strings.EqualFold(s[:5], "[fwd:") && s[len(s)-1] == ']' {
			s, reply = s[5:len(s)-1], true
			continue
		}
		return s, reply
	}
}

func collapseSpace(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\t' || c == '\r' || c == '\n' {
			c = ' '
		}
		if c == ' ' {
			if space {
				continue
			}
			space = true
		} else {
			space = false
		}
		b.WriteByte(c)
	}
	return b.String()
}

// blobLen returns the length of a subj-blob ("[" *BLOBCHAR "]" *WSP) at
// s[i:], or 0.
func blobLen(s string, i int) int {
	if i >= len(s) || s[i] != '[' {
		return 0
	}
	j := i + 1
	for j < len(s) && s[j] != ']' {
		if s[j] == '[' || s[j] == 0 {
			return 0
		}
		j++
	}
	if j >= len(s) {
		return 0
	}
	j++
	for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
		j++
	}
	return j - i
}

// leaderLen returns the length of a subj-leader of the form *subj-blob
// subj-refwd at the start of s, or 0. subj-refwd = ("re" / ("fw" ["d"]))
// *WSP [subj-blob] ":".
func leaderLen(s string) int {
	i := 0
	for n := blobLen(s, i); n > 0; n = blobLen(s, i) {
		i += n
	}
	switch {
	case hasPrefixFold(s[i:], "re"):
		i += 2
	case hasPrefixFold(s[i:], "fwd"):
		i += 3
	case hasPrefixFold(s[i:], "fw"):
		i += 2
	default:
		return 0
	}
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	i += blobLen(s, i)
	if i < len(s) && s[i] == ':' {
		return i + 1
	}
	return 0
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// sortColumn holds one criterion's key for each message to sort.
type sortColumn struct {
	reverse bool
	times   []time.Time
	nums    []int64
	strs    []string
}

// Sort orders the indexes idx into msgs by the criteria (RFC 5256 section
// 3; DISPLAYFROM and DISPLAYTO of RFC 5957), ties by sequence number.
// Strings compare by their folded form: i;ascii-casemap for ASCII, Unicode
// simple folding beyond it.
func Sort(ctx context.Context, crit []imapwire.SortCriterion, msgs []Message, idx []int, src Source) ([]int, error) {
	cols := make([]sortColumn, len(crit))
	needEnv := false
	for i, c := range crit {
		cols[i].reverse = c.Reverse
		switch c.Key {
		case "ARRIVAL", "SIZE":
		case "DATE", "CC", "FROM", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO":
			needEnv = true
		default:
			return nil, fmt.Errorf("imapsearch: unknown sort key %s", c.Key)
		}
	}
	for i := range cols {
		switch crit[i].Key {
		case "ARRIVAL", "DATE":
			cols[i].times = make([]time.Time, len(idx))
		case "SIZE":
			cols[i].nums = make([]int64, len(idx))
		default:
			cols[i].strs = make([]string, len(idx))
		}
	}
	for p, x := range idx {
		if x < 0 || x >= len(msgs) {
			return nil, fmt.Errorf("imapsearch: index %d out of range", x)
		}
		if p&63 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		m := &msgs[x]
		in := m.Info
		var env *msg.Envelope
		if needEnv {
			st, err := structureOf(m, src)
			if err != nil {
				return nil, err
			}
			env = &st.Envelope
		}
		for i, c := range crit {
			col := &cols[i]
			switch c.Key {
			case "ARRIVAL":
				if in != nil {
					col.times[p] = in.InternalDate
				}
			case "DATE":
				var internal time.Time
				if in != nil {
					internal = in.InternalDate
				}
				col.times[p] = sentTime(env.Date, internal)
			case "SIZE":
				if in != nil {
					col.nums[p] = in.Size
				}
			case "SUBJECT":
				b, _ := baseSubject(env.Subject)
				col.strs[p] = foldString(b)
			case "FROM":
				col.strs[p] = foldString(firstMailbox(env.From))
			case "TO":
				col.strs[p] = foldString(firstMailbox(env.To))
			case "CC":
				col.strs[p] = foldString(firstMailbox(env.Cc))
			case "DISPLAYFROM":
				col.strs[p] = foldString(displayName(env.From))
			case "DISPLAYTO":
				col.strs[p] = foldString(displayName(env.To))
			}
		}
	}
	perm := make([]int, len(idx))
	for i := range perm {
		perm[i] = i
	}
	sort.SliceStable(perm, func(a, b int) bool {
		pa, pb := perm[a], perm[b]
		for i := range cols {
			col := &cols[i]
			c := 0
			switch {
			case col.times != nil:
				c = col.times[pa].Compare(col.times[pb])
			case col.nums != nil:
				c = cmpInt(col.nums[pa], col.nums[pb])
			default:
				c = strings.Compare(col.strs[pa], col.strs[pb])
			}
			if col.reverse {
				c = -c
			}
			if c != 0 {
				return c < 0
			}
		}
		// REVERSE does not reverse this implicit last criterion (RFC
		// 5256 section 3).
		return msgs[idx[pa]].Seq < msgs[idx[pb]].Seq
	})
	out := make([]int, len(idx))
	for i, p := range perm {
		out[i] = idx[p]
	}
	return out, nil
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// firstMailbox is the addr-mailbox of the first address (RFC 5256 section
// 3: CC, FROM, TO); a group's name is skipped for its first member.
func firstMailbox(list []msg.Address) string {
	for _, a := range list {
		if a.Host != "" {
			return a.Mailbox
		}
	}
	return ""
}

// displayName is the RFC 5957 section 3 key: the decoded display name of
// the first address, or its addr-spec when it has none.
func displayName(list []msg.Address) string {
	for _, a := range list {
		if a.Host == "" {
			continue // group start or end
		}
		if n := strings.TrimSpace(decodeHeader(a.Name)); n != "" {
			return n
		}
		return a.Mailbox + "@" + a.Host
	}
	return ""
}
