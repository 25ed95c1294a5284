package imapwire

import (
	"errors"
	"log/slog"
	"time"
)

// Command is one client command. Name is upper-case ("FETCH"); for the
// UID forms (RFC 9051 section 6.4.9) Name is the inner command and UID is
// set. Args holds a pointer to the command's typed arguments (one of the
// *Command structs below) or nil for commands without arguments.
type Command struct {
	Tag  string
	Name string
	UID  bool
	Args any
}

// Argument structs, one per command with arguments.
type (
	// AuthenticateCommand: RFC 9051 section 6.2.2, SASL-IR (RFC 4959).
	AuthenticateCommand struct {
		Mechanism string // upper-case
		// Initial is the base64 initial response; HasInitial
		// distinguishes none from "=" (empty, Initial == "").
		Initial    string
		HasInitial bool
	}
	LoginCommand struct{ Username, Password string }
	// EnableCommand: RFC 5161.
	EnableCommand struct{ Caps []string } // upper-case
	// SelectCommand covers SELECT and EXAMINE with the CONDSTORE and
	// QRESYNC parameters (RFC 7162 sections 3.1.8, 3.2.5).
	SelectCommand struct {
		Mailbox   string
		CondStore bool
		QResync   *QResyncParams
	}
	QResyncParams struct {
		UIDValidity uint32
		ModSeq      uint64
		KnownUIDs   *SeqSet // optional
		// SeqMatch is the optional (known-sequence-set known-uid-set).
		SeqMatchSeqs, SeqMatchUIDs *SeqSet
	}
	// CreateCommand: RFC 9051 section 6.3.4 with CREATE-SPECIAL-USE (RFC 6154).
	CreateCommand struct {
		Mailbox    string
		SpecialUse []string
	}
	MailboxCommand struct{ Mailbox string } // DELETE, SUBSCRIBE, UNSUBSCRIBE
	RenameCommand  struct{ From, To string }
	// ListCommand: RFC 9051 section 6.3.9, LIST-EXTENDED (RFC 5258),
	// LIST-STATUS (RFC 5819). LSUB (RFC 3501) is returned as a ListCommand
	// with Name "LSUB" and one pattern.
	ListCommand struct {
		Select    []string // upper-case selection options
		Reference string
		Patterns  []string
		Return    []string // upper-case return options other than STATUS
		Status    []string // items of RETURN (STATUS (...)), upper-case
	}
	StatusCommand struct {
		Mailbox string
		Items   []string // upper-case
	}
	// AppendCommand: RFC 9051 section 6.3.12 with MULTIAPPEND (RFC 3502)
	// and BINARY literal8 (RFC 3516).
	AppendCommand struct {
		Mailbox  string
		Messages []AppendMessage
	}
	AppendMessage struct {
		Flags  []string
		Date   time.Time // zero if absent
		Data   []byte
		Binary bool // sent as ~{n}
		UTF8   bool // sent as UTF8 (~{n}), RFC 6855
	}
	// SearchCommand: RFC 9051 section 6.4.4, ESEARCH return options
	// (RFC 4731). Key is an AND of the top-level keys.
	SearchCommand struct {
		Return    []string // upper-case: MIN MAX ALL COUNT SAVE
		HasReturn bool     // RETURN () given: ESEARCH form even if empty
		Charset   string   // "" if absent
		Key       *SearchKey
	}
	// FetchCommand: RFC 9051 section 6.4.5 with CHANGEDSINCE and VANISHED
	// (RFC 7162 sections 3.1.4, 3.2.6).
	FetchCommand struct {
		Seq          SeqSet
		Items        []FetchItem
		ChangedSince uint64
		Vanished     bool
	}
	// StoreCommand: RFC 9051 section 6.4.6 with UNCHANGEDSINCE (RFC 7162
	// section 3.1.3).
	StoreCommand struct {
		Seq               SeqSet
		UnchangedSince    uint64
		HasUnchangedSince bool
		Mode              StoreMode
		Silent            bool
		Flags             []string
	}
	// CopyCommand is COPY and MOVE (RFC 6851).
	CopyCommand struct {
		Seq     SeqSet
		Mailbox string
	}
	// ExpungeCommand carries the set of UID EXPUNGE (RFC 4315); plain
	// EXPUNGE has nil Args.
	ExpungeCommand struct{ Seq SeqSet }
	// SortCommand: RFC 5256 section 3.
	SortCommand struct {
		Criteria []SortCriterion
		Charset  string
		Key      *SearchKey
	}
	SortCriterion struct {
		Key     string // upper-case: ARRIVAL CC DATE FROM SIZE SUBJECT TO
		Reverse bool
	}
	ThreadCommand struct {
		Algorithm string // upper-case
		Charset   string
		Key       *SearchKey
	}
	// IDCommand: RFC 2971. Nil Params is "ID NIL".
	IDCommand struct{ Params map[string]*string }
	// QuotaCommand is GETQUOTA (Root) and GETQUOTAROOT (Root is the
	// mailbox), RFC 9208 sections 4.2, 4.3.
	QuotaCommand struct{ Root string }
	// SetQuotaCommand: RFC 9208 section 4.4. Limits maps upper-case
	// resource names to limits; an empty map removes all limits.
	SetQuotaCommand struct {
		Root   string
		Limits map[string]uint64
	}
	// CompressCommand: RFC 4978.
	CompressCommand struct{ Mechanism string }
)

// LogValue logs a command without its arguments, which may hold a
// password or message text.
func (c *Command) LogValue() slog.Value {
	name := c.Name
	if c.UID {
		name = "UID " + name
	}
	return slog.GroupValue(slog.String("tag", c.Tag), slog.String("command", name))
}

// StoreMode is how STORE changes flags.
type StoreMode int

const (
	StoreReplace StoreMode = iota // FLAGS
	StoreAdd                      // +FLAGS
	StoreRemove                   // -FLAGS
)

// ReadCommand reads one command. On a parse error it returns an *Error;
// the rest of the command has been skipped unless Error.Fatal, so the
// caller answers and reads the next command. Other errors (io.EOF, a
// failed Continue) come from the connection.
func (r *Reader) ReadCommand() (*Command, error) {
	r.tag, r.name, r.total, r.depth = "", "", 0, 0
	var cmd *Command
	err := r.readLine()
	if err == nil {
		cmd, err = r.parseCommand()
	}
	if err != nil {
		var pe *Error
		if errors.As(err, &pe) && !pe.Fatal {
			if derr := r.discard(); derr != nil {
				return nil, derr
			}
		}
		return nil, err
	}
	return cmd, nil
}

// discard skips what remains of a refused command: if the current line
// ends in a non-synchronising literal, its data and the lines after it
// are on their way. A synchronising literal is never sent, as no
// continuation request was made.
func (r *Reader) discard() error {
	for {
		n, sync, ok := trailingLiteral(r.line)
		if !ok || sync {
			return nil
		}
		if n > r.opts.MaxLiteral || r.total+n > r.opts.MaxCommand {
			return &Error{Tag: r.tag, Code: "TOOBIG", Msg: "literal too big", Fatal: true}
		}
		if _, err := r.br.Discard(int(n)); err != nil {
			return err
		}
		r.total += n
		if err := r.readLine(); err != nil {
			return err
		}
	}
}

// trailingLiteral reports a literal marker at the end of line.
func trailingLiteral(line []byte) (n int64, sync, ok bool) {
	i := len(line) - 1
	if i < 2 || line[i] != '}' {
		return 0, false, false
	}
	i--
	sync = true
	if line[i] == '+' {
		sync = false
		i--
	}
	end := i + 1
	for i >= 0 && line[i] >= '0' && line[i] <= '9' {
		i--
	}
	if i < 0 || line[i] != '{' || end-i-1 == 0 || end-i-1 > 18 {
		return 0, false, false
	}
	for _, c := range line[i+1 : end] {
		n = n*10 + int64(c-'0')
	}
	return n, sync, true
}

func (r *Reader) parseCommand() (*Command, error) {
	tag := r.take(isTagChar)
	if tag == "" {
		if r.eol() {
			return nil, &Error{Msg: "empty command line"}
		}
		return nil, &Error{Msg: "missing or invalid tag"}
	}
	r.tag = tag
	if err := r.sp(); err != nil {
		return nil, r.errf("missing command")
	}
	name, err := r.atom()
	if err != nil {
		return nil, r.errf("missing command")
	}
	cmd := &Command{Tag: tag, Name: upper(name)}
	if cmd.Name == "UID" {
		if err := r.sp(); err != nil {
			return nil, err
		}
		inner, err := r.atom()
		if err != nil {
			return nil, r.errf("missing command after UID")
		}
		cmd.UID, cmd.Name = true, upper(inner)
		switch cmd.Name {
		case "FETCH", "STORE", "COPY", "MOVE", "SEARCH", "EXPUNGE", "SORT", "THREAD":
		default:
			return nil, r.errf("UID %s is not a command", cmd.Name)
		}
	}
	r.name = cmd.Name
	if cmd.Args, err = r.parseArgs(cmd); err != nil {
		return nil, err
	}
	if !r.eol() {
		return nil, r.errf("unexpected %q after %s arguments", r.rest(), cmd.Name)
	}
	return cmd, nil
}

func (r *Reader) parseArgs(cmd *Command) (any, error) {
	switch cmd.Name {
	case "CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "IDLE", "CLOSE", "UNSELECT",
		"CHECK", "NAMESPACE":
		return nil, nil
	case "EXPUNGE":
		if !cmd.UID {
			return nil, nil
		}
		if err := r.sp(); err != nil {
			return nil, err
		}
		s, err := r.seqSet()
		if err != nil {
			return nil, err
		}
		return &ExpungeCommand{Seq: s}, nil
	case "AUTHENTICATE":
		return r.parseAuthenticate()
	case "LOGIN":
		var c LoginCommand
		var err error
		if err = r.sp(); err == nil {
			if c.Username, err = r.astring(); err == nil {
				if err = r.sp(); err == nil {
					c.Password, err = r.astring()
				}
			}
		}
		return &c, err
	case "ENABLE":
		var c EnableCommand
		for r.maybeSP() {
			a, err := r.atom()
			if err != nil {
				return nil, err
			}
			c.Caps = append(c.Caps, upper(a))
		}
		if len(c.Caps) == 0 {
			return nil, r.errf("ENABLE needs a capability")
		}
		return &c, nil
	case "SELECT", "EXAMINE":
		return r.parseSelect()
	case "CREATE":
		return r.parseCreate()
	case "DELETE", "SUBSCRIBE", "UNSUBSCRIBE":
		if err := r.sp(); err != nil {
			return nil, err
		}
		m, err := r.mailbox()
		return &MailboxCommand{Mailbox: m}, err
	case "RENAME":
		var c RenameCommand
		var err error
		if err = r.sp(); err == nil {
			if c.From, err = r.mailbox(); err == nil {
				if err = r.sp(); err == nil {
					c.To, err = r.mailbox()
				}
			}
		}
		return &c, err
	case "LIST":
		return r.parseList()
	case "LSUB":
		var c ListCommand
		var err error
		var p string
		if err = r.sp(); err == nil {
			if c.Reference, err = r.mailbox(); err == nil {
				if err = r.sp(); err == nil {
					p, err = r.listMailbox()
					c.Patterns = []string{p}
				}
			}
		}
		return &c, err
	case "STATUS":
		return r.parseStatus()
	case "APPEND":
		return r.parseAppend()
	case "SEARCH":
		return r.parseSearch()
	case "FETCH":
		c, err := r.parseFetch()
		if err == nil && c.Vanished && !cmd.UID {
			// RFC 7162 section 3.2.6: VANISHED only with UID FETCH.
			return nil, r.errf("VANISHED needs UID FETCH")
		}
		return c, err
	case "STORE":
		return r.parseStore()
	case "COPY", "MOVE":
		var c CopyCommand
		var err error
		if err = r.sp(); err == nil {
			if c.Seq, err = r.seqSet(); err == nil {
				if err = r.sp(); err == nil {
					c.Mailbox, err = r.mailbox()
				}
			}
		}
		return &c, err
	case "SORT":
		return r.parseSort()
	case "THREAD":
		return r.parseThread()
	case "ID":
		return r.parseID()
	case "GETQUOTA":
		if err := r.sp(); err != nil {
			return nil, err
		}
		root, err := r.astring()
		return &QuotaCommand{Root: root}, err
	case "GETQUOTAROOT":
		if err := r.sp(); err != nil {
			return nil, err
		}
		m, err := r.mailbox()
		return &QuotaCommand{Root: m}, err
	case "SETQUOTA":
		return r.parseSetQuota()
	case "COMPRESS":
		if err := r.sp(); err != nil {
			return nil, err
		}
		a, err := r.atom()
		return &CompressCommand{Mechanism: upper(a)}, err
	}
	return nil, r.errf("unknown command %s", cmd.Name)
}

func (r *Reader) parseAuthenticate() (any, error) {
	var c AuthenticateCommand
	if err := r.sp(); err != nil {
		return nil, err
	}
	m, err := r.atom()
	if err != nil {
		return nil, err
	}
	c.Mechanism = upper(m)
	if r.maybeSP() {
		// initial-resp = base64 / "=" (RFC 4959 section 3).
		if r.peek() == '=' && r.pos+1 == len(r.line) {
			r.pos++
			c.HasInitial = true
			return &c, nil
		}
		s := r.take(isBase64Char)
		if s == "" || len(s)%4 != 0 {
			return nil, r.errf("invalid base64 initial response")
		}
		c.Initial, c.HasInitial = s, true
	}
	return &c, nil
}

func isBase64Char(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/' || c == '='
}

func (r *Reader) parseSelect() (any, error) {
	var c SelectCommand
	if err := r.sp(); err != nil {
		return nil, err
	}
	var err error
	if c.Mailbox, err = r.mailbox(); err != nil {
		return nil, err
	}
	if !r.maybeSP() {
		return &c, nil
	}
	// select-params = SP "(" select-param *(SP select-param) ")"
	err = r.paramList(func(name string) error {
		switch name {
		case "CONDSTORE":
			c.CondStore = true
			return nil
		case "QRESYNC":
			if err := r.sp(); err != nil {
				return err
			}
			q, err := r.parseQResync()
			c.QResync = q
			return err
		}
		return r.errf("unknown SELECT parameter %s", name)
	})
	return &c, err
}

// paramList reads "(" name [args] *(SP name [args]) ")", calling fn
// after each name with r positioned after it.
func (r *Reader) paramList(fn func(name string) error) error {
	if err := r.expect('('); err != nil {
		return err
	}
	for first := true; r.peek() != ')'; first = false {
		if !first {
			if err := r.sp(); err != nil {
				return err
			}
		}
		a, err := r.atom()
		if err != nil {
			return err
		}
		if err := fn(upper(a)); err != nil {
			return err
		}
	}
	r.pos++
	return nil
}

// parseQResync reads "(" uidvalidity SP mod-sequence-value [SP known-uids]
// [SP seq-match-data] ")" (RFC 7162 section 3.2.5).
func (r *Reader) parseQResync() (*QResyncParams, error) {
	var q QResyncParams
	if err := r.expect('('); err != nil {
		return nil, err
	}
	var err error
	if q.UIDValidity, err = r.nzNumber(); err != nil {
		return nil, err
	}
	if err := r.sp(); err != nil {
		return nil, err
	}
	if q.ModSeq, err = r.number(64); err != nil {
		return nil, err
	}
	if r.maybeSP() {
		if r.peek() != '(' {
			s, err := r.seqSet()
			if err != nil {
				return nil, err
			}
			q.KnownUIDs = &s
			if !r.maybeSP() {
				goto end
			}
		}
		if err := r.expect('('); err != nil {
			return nil, err
		}
		a, err := r.seqSet()
		if err != nil {
			return nil, err
		}
		if err := r.sp(); err != nil {
			return nil, err
		}
		b, err := r.seqSet()
		if err != nil {
			return nil, err
		}
		if err := r.expect(')'); err != nil {
			return nil, err
		}
		q.SeqMatchSeqs, q.SeqMatchUIDs = &a, &b
	}
end:
	if err := r.expect(')'); err != nil {
		return nil, err
	}
	return &q, nil
}

func (r *Reader) parseCreate() (any, error) {
	var c CreateCommand
	if err := r.sp(); err != nil {
		return nil, err
	}
	var err error
	if c.Mailbox, err = r.mailbox(); err != nil {
		return nil, err
	}
	if r.maybeSP() {
		err = r.paramList(func(name string) error {
			if name != "USE" {
				return r.errf("unknown CREATE parameter %s", name)
			}
			if err := r.sp(); err != nil {
				return err
			}
			f, err := r.flagList()
			c.SpecialUse = append(c.SpecialUse, f...)
			return err
		})
	}
	return &c, err
}

// atomList reads "(" [atom *(SP atom)] ")", upper-casing.
func (r *Reader) atomList(allowEmpty bool) ([]string, error) {
	if err := r.expect('('); err != nil {
		return nil, err
	}
	out := []string{}
	for r.peek() != ')' {
		if len(out) > 0 {
			if err := r.sp(); err != nil {
				return nil, err
			}
		}
		a, err := r.atom()
		if err != nil {
			return nil, err
		}
		out = append(out, upper(a))
	}
	r.pos++
	if len(out) == 0 && !allowEmpty {
		return nil, r.errf("empty list")
	}
	return out, nil
}

func (r *Reader) parseList() (any, error) {
	var c ListCommand
	if err := r.sp(); err != nil {
		return nil, err
	}
	var err error
	if r.peek() == '(' {
		if c.Select, err = r.atomList(true); err != nil {
			return nil, err
		}
		if err := r.sp(); err != nil {
			return nil, err
		}
	}
	if c.Reference, err = r.mailbox(); err != nil {
		return nil, err
	}
	if err := r.sp(); err != nil {
		return nil, err
	}
	if r.peek() == '(' {
		// mbox-or-pat = list-mailbox / patterns (RFC 5258 section 6)
		r.pos++
		for r.peek() != ')' {
			if len(c.Patterns) > 0 {
				if err := r.sp(); err != nil {
					return nil, err
				}
			}
			p, err := r.listMailbox()
			if err != nil {
				return nil, err
			}
			c.Patterns = append(c.Patterns, p)
		}
		r.pos++
		if len(c.Patterns) == 0 {
			return nil, r.errf("empty pattern list")
		}
	} else {
		p, err := r.listMailbox()
		if err != nil {
			return nil, err
		}
		c.Patterns = []string{p}
	}
	if r.maybeSP() {
		a, err := r.atom()
		if err != nil || !equalFold(a, "RETURN") {
			return nil, r.errf("expected RETURN")
		}
		if err := r.sp(); err != nil {
			return nil, err
		}
		c.Return = []string{}
		err = r.paramList(func(name string) error {
			if name == "STATUS" {
				if err := r.sp(); err != nil {
					return err
				}
				items, err := r.atomList(false)
				c.Status = items
				return err
			}
			c.Return = append(c.Return, name)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return &c, nil
}

func (r *Reader) parseStatus() (any, error) {
	var c StatusCommand
	if err := r.sp(); err != nil {
		return nil, err
	}
	var err error
	if c.Mailbox, err = r.mailbox(); err != nil {
		return nil, err
	}
	if err := r.sp(); err != nil {
		return nil, err
	}
	if c.Items, err = r.atomList(false); err != nil {
		return nil, err
	}
	for _, it := range c.Items {
		switch it {
		case "MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE",
			"RECENT", "HIGHESTMODSEQ", "APPENDLIMIT", "MAILBOXID", "DELETED-STORAGE":
		default:
			return nil, r.errf("unknown STATUS item %s", it)
		}
	}
	return &c, nil
}

// parseAppend reads APPEND mailbox 1*(SP [flag-list SP] [date-time SP]
// literal) (MULTIAPPEND allows more than one message).
func (r *Reader) parseAppend() (any, error) {
	var c AppendCommand
	if err := r.sp(); err != nil {
		return nil, err
	}
	var err error
	if c.Mailbox, err = r.mailbox(); err != nil {
		return nil, err
	}
	for r.maybeSP() {
		var m AppendMessage
		if r.peek() == '(' {
			if m.Flags, err = r.flagList(); err != nil {
				return nil, err
			}
			if err := r.sp(); err != nil {
				return nil, err
			}
		}
		if r.peek() == '"' {
			if m.Date, err = r.dateTime(); err != nil {
				return nil, err
			}
			if err := r.sp(); err != nil {
				return nil, err
			}
		}
		utf8Form := false
		if r.peek() == 'U' || r.peek() == 'u' {
			// append-data =/ "UTF8" SP "(" literal8 ")" (RFC 6855
			// section 4): a message with UTF-8 headers.
			if a := r.take(isAtomChar); !equalFold(a, "UTF8") {
				return nil, r.errf("expected message literal")
			}
			if err := r.sp(); err != nil {
				return nil, err
			}
			if err := r.expect('('); err != nil {
				return nil, err
			}
			if r.peek() != '~' {
				return nil, r.errf("UTF8 APPEND needs a literal8")
			}
			utf8Form = true
		} else if r.peek() != '{' && r.peek() != '~' {
			return nil, r.badChar("message literal")
		}
		if m.Data, m.Binary, err = r.literal(litBinary); err != nil {
			return nil, err
		}
		if utf8Form {
			m.UTF8 = true
			if err := r.expect(')'); err != nil {
				return nil, err
			}
		}
		c.Messages = append(c.Messages, m)
	}
	if len(c.Messages) == 0 {
		return nil, r.errf("APPEND needs a message")
	}
	return &c, nil
}

func (r *Reader) parseStore() (any, error) {
	var c StoreCommand
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
		err = r.paramList(func(name string) error {
			if name != "UNCHANGEDSINCE" {
				return r.errf("unknown STORE modifier %s", name)
			}
			if err := r.sp(); err != nil {
				return err
			}
			n, err := r.number(64)
			c.UnchangedSince, c.HasUnchangedSince = n, true
			return err
		})
		if err != nil {
			return nil, err
		}
		if err := r.sp(); err != nil {
			return nil, err
		}
	}
	switch r.peek() {
	case '+':
		c.Mode = StoreAdd
		r.pos++
	case '-':
		c.Mode = StoreRemove
		r.pos++
	}
	item, err := r.atom()
	if err != nil {
		return nil, err
	}
	switch upper(item) {
	case "FLAGS":
	case "FLAGS.SILENT":
		c.Silent = true
	default:
		return nil, r.errf("unknown STORE item %s", item)
	}
	if err := r.sp(); err != nil {
		return nil, err
	}
	if r.peek() == '(' {
		c.Flags, err = r.flagList()
		return &c, err
	}
	// RFC 3501: flags may also be a space-separated list without parens.
	for {
		f, err := r.flag()
		if err != nil {
			return nil, err
		}
		c.Flags = append(c.Flags, f)
		if !r.maybeSP() {
			return &c, nil
		}
	}
}

func (r *Reader) parseSort() (any, error) {
	var c SortCommand
	if err := r.sp(); err != nil {
		return nil, err
	}
	crit, err := r.atomList(false)
	if err != nil {
		return nil, err
	}
	for i := 0; i < len(crit); i++ {
		sc := SortCriterion{Key: crit[i]}
		if sc.Key == "REVERSE" {
			if i+1 == len(crit) {
				return nil, r.errf("REVERSE needs a sort key")
			}
			i++
			sc = SortCriterion{Key: crit[i], Reverse: true}
		}
		switch sc.Key {
		case "ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO":
		default:
			return nil, r.errf("unknown sort key %s", sc.Key)
		}
		c.Criteria = append(c.Criteria, sc)
	}
	if err := r.sp(); err != nil {
		return nil, err
	}
	if c.Charset, err = r.astring(); err != nil {
		return nil, err
	}
	c.Charset = upper(c.Charset)
	c.Key, err = r.searchProgram()
	return &c, err
}

func (r *Reader) parseThread() (any, error) {
	var c ThreadCommand
	if err := r.sp(); err != nil {
		return nil, err
	}
	a, err := r.atom()
	if err != nil {
		return nil, err
	}
	c.Algorithm = upper(a)
	if err := r.sp(); err != nil {
		return nil, err
	}
	if c.Charset, err = r.astring(); err != nil {
		return nil, err
	}
	c.Charset = upper(c.Charset)
	c.Key, err = r.searchProgram()
	return &c, err
}

func (r *Reader) parseID() (any, error) {
	if err := r.sp(); err != nil {
		return nil, err
	}
	if r.peek() != '(' {
		if _, ok, err := r.nstring(); err != nil || ok {
			return nil, r.errf("expected ID parameter list or NIL")
		}
		return &IDCommand{}, nil
	}
	r.pos++
	c := &IDCommand{Params: map[string]*string{}}
	for r.peek() != ')' {
		if len(c.Params) > 0 {
			if err := r.sp(); err != nil {
				return nil, err
			}
		}
		k, err := r.str()
		if err != nil {
			return nil, err
		}
		if err := r.sp(); err != nil {
			return nil, err
		}
		v, ok, err := r.nstring()
		if err != nil {
			return nil, err
		}
		if len(c.Params) >= 30 {
			return nil, r.errf("too many ID parameters")
		}
		if ok {
			c.Params[k] = &v
		} else {
			c.Params[k] = nil
		}
	}
	r.pos++
	return c, nil
}

func (r *Reader) parseSetQuota() (any, error) {
	c := &SetQuotaCommand{Limits: map[string]uint64{}}
	if err := r.sp(); err != nil {
		return nil, err
	}
	var err error
	if c.Root, err = r.astring(); err != nil {
		return nil, err
	}
	if err := r.sp(); err != nil {
		return nil, err
	}
	err = r.paramList(func(name string) error {
		if err := r.sp(); err != nil {
			return err
		}
		n, err := r.number(64)
		if err != nil {
			return err
		}
		if _, dup := c.Limits[name]; dup {
			return r.errf("resource %s given twice", name)
		}
		c.Limits[name] = n
		return nil
	})
	return c, err
}
