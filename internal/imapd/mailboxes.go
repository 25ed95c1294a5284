package imapd

import (
	"context"
	"errors"
	"sort"
	"strings"

	"github.com/posthorn/posthorn/internal/imapd/imapwire"
	"github.com/posthorn/posthorn/internal/store"
)

// delimiter is the hierarchy separator of every mailbox name.
const delimiter = '/'

// mailboxName turns a name as the client sent it into the store's form:
// modified UTF-7 is decoded unless the client speaks UTF-8 (IMAP4rev2 or
// UTF8=ACCEPT, RFC 6855 section 3), and INBOX's first level is upper-case.
func (c *session) mailboxName(name string) (string, result, bool) {
	if !c.utf8 {
		dec, err := imapwire.DecodeMailbox(name)
		if err != nil {
			return "", badResult("Invalid mailbox name: " + err.Error()), false
		}
		name = dec
	}
	if name == "" {
		return "", no("CANNOT", "Empty mailbox name"), false
	}
	if first, rest, found := strings.Cut(name, string(delimiter)); found && strings.EqualFold(first, store.Inbox) {
		name = store.Inbox + "/" + rest
	} else if strings.EqualFold(name, store.Inbox) {
		name = store.Inbox
	}
	return name, result{}, true
}

// mailboxError maps a store error on a mailbox to a tagged answer with
// the RFC 5530 codes.
func (c *session) mailboxError(op string, err error) result {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return no("NONEXISTENT", "No such mailbox")
	case errors.Is(err, store.ErrExists):
		return no("ALREADYEXISTS", "Mailbox already exists")
	case errors.Is(err, store.ErrInvalidName):
		return no("CANNOT", "Invalid mailbox name")
	case errors.Is(err, store.ErrOverQuota):
		return no("OVERQUOTA", "Over quota")
	}
	return c.storeFailed(op, err)
}

func (c *session) cmdCreate(ctx context.Context, a *imapwire.CreateCommand) result {
	name, res, okName := c.mailboxName(a.Mailbox)
	if !okName {
		return res
	}
	// A trailing delimiter says the client means to make children
	// (RFC 9051 section 6.3.4): the name is made without it.
	name = strings.TrimRight(name, string(delimiter))
	if strings.ContainsAny(name, "%*") {
		return no("CANNOT", "Mailbox names cannot contain % or *")
	}
	if name == store.Inbox {
		return no("ALREADYEXISTS", "INBOX always exists")
	}
	special := ""
	switch len(a.SpecialUse) {
	case 0:
	case 1:
		switch strings.ToLower(a.SpecialUse[0]) {
		case `\sent`, `\drafts`, `\junk`, `\trash`, `\archive`:
			special = `\` + strings.ToUpper(a.SpecialUse[0][1:2]) + strings.ToLower(a.SpecialUse[0][2:])
		default:
			return no("USEATTR", "Unsupported special-use attribute")
		}
	default:
		return no("USEATTR", "One special-use attribute per mailbox")
	}
	// Parents that do not exist are made too (RFC 9051 section 6.3.4
	// lets the server; clients expect it).
	levels := strings.Split(name, "/")
	for i := 1; i < len(levels); i++ {
		parent := strings.Join(levels[:i], "/")
		if _, err := c.srv.Store.GetMailbox(ctx, c.acct.ID, parent); errors.Is(err, store.ErrNotFound) {
			if _, err := c.srv.Store.CreateMailbox(ctx, c.acct.ID, parent, ""); err != nil && !errors.Is(err, store.ErrExists) {
				return c.mailboxError("CREATE", err)
			}
		}
	}
	if _, err := c.srv.Store.CreateMailbox(ctx, c.acct.ID, name, special); err != nil {
		return c.mailboxError("CREATE", err)
	}
	return ok("CREATE completed")
}

func (c *session) cmdDelete(ctx context.Context, mailbox string) result {
	name, res, okName := c.mailboxName(mailbox)
	if !okName {
		return res
	}
	if name == store.Inbox {
		return no("CANNOT", "INBOX cannot be deleted")
	}
	if c.sel != nil && c.sel.mb.Name == name {
		// Deleting the selected mailbox: RFC 9051 section 6.3.5 lets the
		// server refuse; clients UNSELECT first.
		return no("INUSE", "Mailbox is selected; UNSELECT it first")
	}
	if err := c.srv.Store.DeleteMailbox(ctx, c.acct.ID, name); err != nil {
		return c.mailboxError("DELETE", err)
	}
	return ok("DELETE completed")
}

func (c *session) cmdRename(ctx context.Context, from, to string) result {
	oldName, res, okName := c.mailboxName(from)
	if !okName {
		return res
	}
	newName, res, okName := c.mailboxName(to)
	if !okName {
		return res
	}
	newName = strings.TrimRight(newName, string(delimiter))
	if strings.ContainsAny(newName, "%*") {
		return no("CANNOT", "Mailbox names cannot contain % or *")
	}
	if newName == store.Inbox {
		return no("ALREADYEXISTS", "INBOX always exists")
	}
	err := c.srv.Store.RenameMailbox(ctx, c.acct.ID, oldName, newName)
	if errors.Is(err, store.ErrNotFound) {
		// A parent that does not exist itself (\Noselect, its children
		// do) is renamed by renaming its children (RFC 3501 section
		// 6.3.5's example renames such a "foo").
		err = c.renameChildren(ctx, oldName, newName)
	}
	if err != nil {
		return c.mailboxError("RENAME", err)
	}
	if c.sel != nil && c.sel.mb.Name != store.Inbox && (c.sel.mb.Name == oldName || strings.HasPrefix(c.sel.mb.Name, oldName+"/")) {
		c.sel.mb.Name = newName + strings.TrimPrefix(c.sel.mb.Name, oldName)
	}
	return ok("RENAME completed")
}

// renameChildren renames the mailboxes under oldName whose parents do
// not exist; the store takes their own children along.
func (c *session) renameChildren(ctx context.Context, oldName, newName string) error {
	mbs, err := c.srv.Store.ListMailboxes(ctx, c.acct.ID)
	if err != nil {
		return err
	}
	var top []string
	exists := map[string]bool{}
	for _, mb := range mbs {
		exists[mb.Name] = true
	}
	for _, mb := range mbs {
		rest, under := strings.CutPrefix(mb.Name, oldName+"/")
		if !under {
			continue
		}
		// Top of a subtree: no existing ancestor below oldName.
		isTop := true
		for p := rest; strings.Contains(p, "/"); {
			p = p[:strings.LastIndexByte(p, '/')]
			if exists[oldName+"/"+p] {
				isTop = false
				break
			}
		}
		if isTop {
			top = append(top, mb.Name)
		}
	}
	if len(top) == 0 {
		return store.ErrNotFound
	}
	for _, name := range top {
		if err := c.srv.Store.RenameMailbox(ctx, c.acct.ID, name, newName+strings.TrimPrefix(name, oldName)); err != nil {
			return err
		}
	}
	return nil
}

func (c *session) cmdSubscribe(ctx context.Context, mailbox string, subscribe bool) result {
	name, res, okName := c.mailboxName(mailbox)
	if !okName {
		return res
	}
	if err := c.srv.Store.SetSubscribed(ctx, c.acct.ID, name, subscribe); err != nil {
		if !subscribe && errors.Is(err, store.ErrNotFound) {
			return ok("UNSUBSCRIBE completed") // nothing to undo
		}
		return c.mailboxError("SUBSCRIBE", err)
	}
	if subscribe {
		return ok("SUBSCRIBE completed")
	}
	return ok("UNSUBSCRIBE completed")
}

// listEntry is one mailbox, or a parent that does not exist, in a LIST
// answer.
type listEntry struct {
	name            string
	mb              *store.Mailbox // nil for a parent that does not exist
	hasChildren     bool
	subscribedChild bool // a child is subscribed (RECURSIVEMATCH's CHILDINFO)
}

// cmdList answers LIST (RFC 9051 section 6.3.9) with LIST-EXTENDED (RFC
// 5258), LIST-STATUS (RFC 5819) and SPECIAL-USE (RFC 6154), and LSUB (RFC
// 3501 section 6.3.9).
func (c *session) cmdList(ctx context.Context, lsub bool, a *imapwire.ListCommand) result {
	var selSubscribed, selSpecial, recursive bool
	for _, o := range a.Select {
		switch o {
		case "SUBSCRIBED":
			selSubscribed = true
		case "SPECIAL-USE":
			selSpecial = true
		case "RECURSIVEMATCH":
			recursive = true
		case "REMOTE":
		default:
			return badResult("Unknown LIST selection option " + o)
		}
	}
	if recursive && !selSubscribed && !selSpecial {
		return badResult("RECURSIVEMATCH needs another selection option")
	}
	var retSubscribed bool
	for _, o := range a.Return {
		switch o {
		case "SUBSCRIBED":
			retSubscribed = true
		case "CHILDREN", "SPECIAL-USE":
			// Nothing to do: \HasChildren/\HasNoChildren and the
			// special-use attributes are always sent (RFC 6154 section 2).
		default:
			return badResult("Unknown LIST return option " + o)
		}
	}
	if lsub {
		selSubscribed = true
	}
	ref := a.Reference
	if !c.utf8 {
		dec, err := imapwire.DecodeMailbox(ref)
		if err != nil {
			return badResult("Invalid reference name")
		}
		ref = dec
	}
	// LIST "" "" asks for the delimiter (RFC 9051 section 6.3.9).
	if len(a.Patterns) == 1 && a.Patterns[0] == "" && !lsub && len(a.Select) == 0 {
		c.w.Untagged().Atom(`LIST (\Noselect) "/" ""`).CRLF()
		return ok("LIST completed")
	}
	var patterns []string
	for _, p := range a.Patterns {
		if p == "" {
			continue
		}
		if !c.utf8 {
			dec, err := imapwire.DecodeMailbox(p)
			if err != nil {
				return badResult("Invalid mailbox pattern")
			}
			p = dec
		}
		// The reference is a prefix of the pattern (RFC 9051 section
		// 6.3.9): LIST "Archive/" "%" lists Archive's children.
		p = ref + p
		patterns = append(patterns, p)
	}
	mbs, err := c.srv.Store.ListMailboxes(ctx, c.acct.ID)
	if err != nil {
		return c.storeFailed("LIST", err)
	}
	entries := listEntries(mbs)
	name := "LIST"
	if lsub {
		name = "LSUB"
	}
	for _, e := range entries {
		matched := false
		for _, p := range patterns {
			if matchPattern(p, e.name) {
				matched = true
				break
			}
		}
		if !matched {
			continue
		}
		subscribed := e.mb != nil && e.mb.Subscribed
		if selSubscribed && !subscribed && !(recursive && e.subscribedChild) {
			// LSUB lists an unsubscribed parent of a subscribed
			// mailbox only when the pattern hides that mailbox ("%"),
			// as RFC 3501 section 6.3.9 says.
			if !(lsub && e.subscribedChild && !subscribedMatch(entries, e.name, patterns)) {
				continue
			}
		}
		if selSpecial && (e.mb == nil || e.mb.SpecialUse == "") && !(recursive && e.hasChildren) {
			continue
		}
		var attrs []string
		switch {
		case lsub && !subscribed:
			// Listed by LSUB only for a subscribed child (RFC 3501
			// section 6.3.9: such a parent "MUST be flagged with the
			// \Noselect attribute").
			attrs = append(attrs, `\Noselect`)
		case e.mb == nil && c.rev2:
			attrs = append(attrs, `\NonExistent`)
		case e.mb == nil:
			attrs = append(attrs, `\Noselect`)
		}
		if !lsub {
			if e.hasChildren {
				attrs = append(attrs, `\HasChildren`)
			} else {
				attrs = append(attrs, `\HasNoChildren`)
			}
			if subscribed && (selSubscribed || retSubscribed) {
				attrs = append(attrs, `\Subscribed`)
			}
			if e.mb != nil && e.mb.SpecialUse != "" {
				attrs = append(attrs, e.mb.SpecialUse)
			}
		}
		c.w.Untagged().Atom(name).SP().Flags(attrs).Atom(` "/" `).Mailbox(e.name)
		if recursive && selSubscribed && !subscribed && e.subscribedChild {
			c.w.Atom(` ("CHILDINFO" ("SUBSCRIBED"))`)
		}
		c.w.CRLF()
		// LIST-STATUS (RFC 5819): a STATUS for each selectable mailbox
		// listed.
		if len(a.Status) > 0 && e.mb != nil {
			c.writeStatus(e.mb, a.Status)
		}
	}
	return ok(name + " completed")
}

// subscribedMatch reports whether a subscribed mailbox under parent
// matches one of the patterns.
func subscribedMatch(entries []*listEntry, parent string, patterns []string) bool {
	for _, e := range entries {
		if e.mb == nil || !e.mb.Subscribed || !strings.HasPrefix(e.name, parent+"/") {
			continue
		}
		for _, p := range patterns {
			if matchPattern(p, e.name) {
				return true
			}
		}
	}
	return false
}

// listEntries is every mailbox with its hierarchy facts, plus the
// parents that do not exist of those that do, sorted by name.
func listEntries(mbs []store.Mailbox) []*listEntry {
	byName := map[string]*listEntry{}
	for i := range mbs {
		byName[mbs[i].Name] = &listEntry{name: mbs[i].Name, mb: &mbs[i]}
	}
	for i := range mbs {
		name := mbs[i].Name
		sub := mbs[i].Subscribed
		for {
			j := strings.LastIndexByte(name, delimiter)
			if j < 0 {
				break
			}
			name = name[:j]
			e := byName[name]
			if e == nil {
				e = &listEntry{name: name}
				byName[name] = e
			}
			e.hasChildren = true
			if sub {
				e.subscribedChild = true
			}
		}
	}
	out := make([]*listEntry, 0, len(byName))
	for _, e := range byName {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool {
		// INBOX first, then by name.
		if (out[i].name == store.Inbox) != (out[j].name == store.Inbox) {
			return out[i].name == store.Inbox
		}
		return out[i].name < out[j].name
	})
	return out
}

// matchPattern matches a LIST pattern: "*" any characters, "%" any but
// the delimiter (RFC 9051 section 6.3.9). INBOX matches case-insensitively.
func matchPattern(pattern, name string) bool {
	if len(pattern) >= 5 && strings.EqualFold(pattern[:5], store.Inbox) && (len(pattern) == 5 || pattern[5] == '/' || pattern[5] == '*' || pattern[5] == '%') {
		pattern = store.Inbox + pattern[5:]
	}
	return match(pattern, name, 0)
}

func match(p, s string, depth int) bool {
	if depth > 64 {
		return false
	}
	for len(p) > 0 {
		switch p[0] {
		case '*', '%':
			// Collapse runs of wildcards so that "**...*" costs no more
			// than one.
			wild := p[0]
			for len(p) > 0 && (p[0] == '*' || p[0] == '%') {
				if p[0] == '*' {
					wild = '*'
				}
				p = p[1:]
			}
			if len(p) == 0 {
				return wild == '*' || strings.IndexByte(s, delimiter) < 0
			}
			for i := 0; i <= len(s); i++ {
				if match(p, s[i:], depth+1) {
					return true
				}
				if i < len(s) && wild == '%' && s[i] == delimiter {
					return false
				}
			}
			return false
		default:
			if len(s) == 0 || s[0] != p[0] {
				return false
			}
			p, s = p[1:], s[1:]
		}
	}
	return len(s) == 0
}

func (c *session) cmdStatus(ctx context.Context, a *imapwire.StatusCommand) result {
	name, res, okName := c.mailboxName(a.Mailbox)
	if !okName {
		return res
	}
	mb, err := c.srv.Store.GetMailbox(ctx, c.acct.ID, name)
	if err != nil {
		return c.mailboxError("STATUS", err)
	}
	c.writeStatus(mb, a.Items)
	return ok("STATUS completed")
}

// writeStatus writes "* STATUS name (items)" (RFC 9051 section 7.3.4).
func (c *session) writeStatus(mb *store.Mailbox, items []string) {
	c.w.Untagged().Atom("STATUS ").Mailbox(mb.Name).Atom(" (")
	for i, it := range items {
		if i > 0 {
			c.w.SP()
		}
		c.w.Atom(it).SP()
		switch it {
		case "MESSAGES":
			c.w.Number(uint64(mb.Messages))
		case "UIDNEXT":
			c.w.Number(uint64(mb.UIDNext))
		case "UIDVALIDITY":
			c.w.Number(uint64(mb.UIDValidity))
		case "UNSEEN":
			c.w.Number(uint64(mb.Unseen))
		case "DELETED":
			c.w.Number(uint64(mb.Deleted))
		case "SIZE":
			c.w.Number(uint64(max(mb.Size, 0)))
		case "RECENT":
			c.w.Number(0)
		case "HIGHESTMODSEQ":
			c.condstore = true // RFC 7162 section 3.1.2: STATUS HIGHESTMODSEQ enables CONDSTORE
			c.w.Number(mb.HighestModSeq)
		case "APPENDLIMIT":
			c.w.Number(uint64(c.srv.AppendLimit))
		case "DELETED-STORAGE":
			c.w.Number(0)
		case "MAILBOXID":
			c.w.Atom("(M").Number(uint64(mb.ID)).Atom("-").Number(uint64(mb.UIDValidity)).Atom(")")
		}
	}
	c.w.Atom(")").CRLF()
}

// cmdGetQuota answers GETQUOTA and GETQUOTAROOT (RFC 9208): one quota
// root per account, "", with STORAGE in units of 1024 octets and MESSAGE.
func (c *session) cmdGetQuota(ctx context.Context, isRoot bool, arg string) result {
	if isRoot {
		name, res, okName := c.mailboxName(arg)
		if !okName {
			return res
		}
		if _, err := c.srv.Store.GetMailbox(ctx, c.acct.ID, name); err != nil {
			return c.mailboxError("GETQUOTAROOT", err)
		}
		c.w.Untagged().Atom("QUOTAROOT ").Mailbox(name).Atom(` ""`).CRLF()
	} else if arg != "" {
		return no("NONEXISTENT", "No such quota root")
	}
	acct, err := c.srv.Store.GetAccount(ctx, c.acct.Name)
	if err != nil {
		return c.storeFailed("GETQUOTA", err)
	}
	c.w.Untagged().Atom(`QUOTA "" (`)
	if acct.QuotaBytes > 0 {
		c.w.Atom("STORAGE ").Number(uint64(max(acct.UsedBytes, 0)+1023) / 1024).SP().Number(uint64(acct.QuotaBytes) / 1024)
	}
	c.w.Atom(")").CRLF()
	if isRoot {
		return ok("GETQUOTAROOT completed")
	}
	return ok("GETQUOTA completed")
}
