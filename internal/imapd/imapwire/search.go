package imapwire

import "time"

// SearchKey is a node of a search tree (RFC 9051 section 6.4.4). Op is
// the upper-case key name; the parser adds "AND" (a parenthesised list or
// the top level: all Children must match) and "SEQ" (a bare sequence
// set in Seq). Which other field is set depends on Op.
type SearchKey struct {
	Op       string
	Children []*SearchKey // AND: any number; OR: 2; NOT: 1
	Str      string       // string argument (FROM, BODY, HEADER value, ...)
	Field    string       // HEADER field name
	Num      uint64       // LARGER, SMALLER, MODSEQ, OLDER, YOUNGER
	Date     time.Time    // BEFORE, ON, SINCE, SENT*, SAVED*
	Seq      SeqSet       // SEQ, UID
	Flag     string       // KEYWORD, UNKEYWORD
	// ModSeqEntry and ModSeqType are the optional entry of MODSEQ
	// (RFC 7162 section 3.1.5): a flag name and "priv", "shared" or "all".
	ModSeqEntry, ModSeqType string
}

// search-key argument shapes.
type keyArg int

const (
	argNone keyArg = iota
	argString
	argDate
	argNumber
	argFlag
	argHeader
	argSeq
	argOr
	argNot
	argModSeq
	argNzNumber
)

var searchKeys = map[string]keyArg{
	"ALL": argNone, "ANSWERED": argNone, "DELETED": argNone, "DRAFT": argNone,
	"FLAGGED": argNone, "SEEN": argNone, "UNANSWERED": argNone, "UNDELETED": argNone,
	"UNDRAFT": argNone, "UNFLAGGED": argNone, "UNSEEN": argNone,
	// RFC 3501 keys removed in RFC 9051 but sent by IMAP4rev1 clients.
	"NEW": argNone, "OLD": argNone, "RECENT": argNone,
	"BCC": argString, "BODY": argString, "CC": argString, "FROM": argString,
	"SUBJECT": argString, "TEXT": argString, "TO": argString,
	"BEFORE": argDate, "ON": argDate, "SINCE": argDate,
	"SENTBEFORE": argDate, "SENTON": argDate, "SENTSINCE": argDate,
	// SAVEDATE, RFC 8514 section 4.
	"SAVEDBEFORE": argDate, "SAVEDON": argDate, "SAVEDSINCE": argDate,
	"SAVEDATESUPPORTED": argNone,
	"KEYWORD":           argFlag, "UNKEYWORD": argFlag,
	"LARGER": argNumber, "SMALLER": argNumber,
	"HEADER": argHeader,
	"UID":    argSeq,
	"OR":     argOr, "NOT": argNot,
	"MODSEQ": argModSeq,
	// WITHIN, RFC 5032: an interval in seconds.
	"OLDER": argNzNumber, "YOUNGER": argNzNumber,
	// OBJECTID, RFC 8474 section 6.
	"EMAILID": argString, "THREADID": argString,
}

// parseSearch reads the SEARCH arguments: [SP "RETURN" SP "(" ... ")"]
// [SP "CHARSET" SP charset] 1*(SP search-key).
func (r *Reader) parseSearch() (any, error) {
	var c SearchCommand
	save := r.pos
	if err := r.sp(); err != nil {
		return nil, err
	}
	a := r.take(isAtomChar)
	if equalFold(a, "RETURN") {
		if err := r.sp(); err != nil {
			return nil, err
		}
		opts, err := r.atomList(true)
		if err != nil {
			return nil, err
		}
		for _, o := range opts {
			switch o {
			case "MIN", "MAX", "ALL", "COUNT", "SAVE":
			default:
				return nil, r.errf("unknown SEARCH return option %s", o)
			}
		}
		c.Return, c.HasReturn = opts, true
		save = r.pos
		if err := r.sp(); err != nil {
			return nil, err
		}
		a = r.take(isAtomChar)
	}
	if equalFold(a, "CHARSET") {
		if err := r.sp(); err != nil {
			return nil, err
		}
		cs, err := r.astring()
		if err != nil {
			return nil, err
		}
		c.Charset = upper(cs)
	} else {
		r.pos = save
	}
	var err error
	c.Key, err = r.searchProgram()
	return &c, err
}

// searchProgram reads 1*(SP search-key) into an AND node.
func (r *Reader) searchProgram() (*SearchKey, error) {
	and := &SearchKey{Op: "AND"}
	for r.maybeSP() {
		k, err := r.searchKey()
		if err != nil {
			return nil, err
		}
		and.Children = append(and.Children, k)
	}
	if len(and.Children) == 0 {
		return nil, r.errf("missing search key")
	}
	return and, nil
}

func (r *Reader) searchKey() (*SearchKey, error) {
	if err := r.enter(); err != nil {
		return nil, err
	}
	defer r.leave()
	c := r.peek()
	if c == '(' {
		r.pos++
		and := &SearchKey{Op: "AND"}
		for {
			k, err := r.searchKey()
			if err != nil {
				return nil, err
			}
			and.Children = append(and.Children, k)
			if r.peek() == ')' {
				r.pos++
				return and, nil
			}
			if err := r.sp(); err != nil {
				return nil, r.errf("unterminated search key list")
			}
		}
	}
	if c == '*' || c == '$' || ('0' <= c && c <= '9') {
		s, err := r.seqSet()
		return &SearchKey{Op: "SEQ", Seq: s}, err
	}
	name, err := r.atom()
	if err != nil {
		return nil, r.errf("expected search key")
	}
	k := &SearchKey{Op: upper(name)}
	kind, ok := searchKeys[k.Op]
	if !ok {
		return nil, r.errf("unknown search key %s", name)
	}
	if kind == argNone {
		return k, nil
	}
	if err := r.sp(); err != nil {
		return nil, err
	}
	switch kind {
	case argString:
		k.Str, err = r.astring()
	case argDate:
		k.Date, err = r.date()
	case argNumber:
		k.Num, err = r.number(64)
	case argNzNumber:
		var n uint32
		n, err = r.nzNumber()
		k.Num = uint64(n)
	case argFlag:
		k.Flag, err = r.atom()
	case argHeader:
		if k.Field, err = r.astring(); err == nil {
			if err = r.sp(); err == nil {
				k.Str, err = r.astring()
			}
		}
	case argSeq:
		k.Seq, err = r.seqSet()
	case argNot:
		var sub *SearchKey
		sub, err = r.searchKey()
		k.Children = []*SearchKey{sub}
	case argOr:
		var a, b *SearchKey
		if a, err = r.searchKey(); err == nil {
			if err = r.sp(); err == nil {
				b, err = r.searchKey()
			}
		}
		k.Children = []*SearchKey{a, b}
	case argModSeq:
		// MODSEQ [entry-name SP entry-type-req SP] mod-sequence-valzer
		if r.peek() == '"' {
			if k.ModSeqEntry, err = r.quoted(); err != nil {
				return nil, err
			}
			if err := r.sp(); err != nil {
				return nil, err
			}
			t, err := r.atom()
			if err != nil {
				return nil, err
			}
			switch t = lower(t); t {
			case "priv", "shared", "all":
			default:
				return nil, r.errf("bad MODSEQ entry type %s", t)
			}
			k.ModSeqType = t
			if err := r.sp(); err != nil {
				return nil, err
			}
		}
		k.Num, err = r.number(64)
	}
	if err != nil {
		return nil, err
	}
	return k, nil
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}
