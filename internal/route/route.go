// Package route resolves a recipient address to where its mail goes, as
// Sendmail does with the tables (ARCHITECTURE.md, "Addresses and the Sendmail
// tables"): a local domain goes through virtusertable, then aliases, and ends
// at an account; every other domain is remote (relaying is policy's decision).
// It also runs the aliases' "|command" and "/file" targets.
package route

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/posthorn/posthorn/internal/addr"
	"github.com/posthorn/posthorn/internal/maps"
	"github.com/posthorn/posthorn/internal/srs"
)

// Bounds on the work one recipient can cause.
const (
	maxDepth       = 20
	maxTargets     = 1000
	maxIncludeSize = 1 << 20
)

// Accounts tells whether an account exists.
type Accounts interface {
	// AccountExists reports whether name (lower-case) is an account. An error
	// is temporary.
	AccountExists(ctx context.Context, name string) (bool, error)
}

// Config configures a Resolver.
type Config struct {
	Hostname      string              // the server's name: always a local domain
	Tables        func() *maps.Tables // the tables in force (maps.Watcher.Current)
	Accounts      Accounts
	AllowPrograms bool // "|command" alias targets
	AllowFiles    bool // "/path" alias targets
	// SRS, when set, turns bounces to the addresses it made (SRS0=...@its
	// domain) back into the original sender's address.
	SRS *srs.Rewriter
}

// Resolver resolves recipients. It is safe for concurrent use.
type Resolver struct{ cfg Config }

// New returns a Resolver.
func New(cfg Config) *Resolver {
	cfg.Hostname = strings.ToLower(strings.TrimSuffix(cfg.Hostname, "."))
	return &Resolver{cfg: cfg}
}

// TargetKind says what a Target is.
type TargetKind int

const (
	TargetAccount TargetKind = iota + 1 // a mailbox of an account
	TargetRemote                        // an address elsewhere: the queue sends it
	TargetFile                          // append to a file (aliases "/path")
	TargetProgram                       // pipe to a program (aliases "|command")
)

// Target is one place a message goes.
type Target struct {
	Kind    TargetKind
	Account string       // TargetAccount
	Address addr.Address // TargetRemote
	Path    string       // TargetFile
	Command string       // TargetProgram
	// Owner is the address that gets errors for this target: "owner-LIST" when
	// the target came from the alias LIST and owner-LIST exists (aliases(5)).
	Owner string
}

// Rejection refuses a recipient with an SMTP reply.
type Rejection struct {
	Code     int
	Enhanced string
	Text     string
}

func (r *Rejection) Error() string { return fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, r.Text) }

// Result is where a recipient's mail goes.
type Result struct {
	Local   bool     // the domain is local: relay rules do not apply
	Targets []Target // deduplicated
	// Failed holds the members of an expansion that could not be resolved
	// while others were (Sendmail accepts the recipient and bounces those).
	Failed []error
	Trace  []string // how the address was resolved, for logs
}

// IsLocalDomain reports whether mail for domain is delivered here: the
// hostname, "localhost", a local-host-names entry, or a domain with
// virtusertable entries. Address literals are not local: mail to user@[ip]
// needs relay permission like any remote address.
func (r *Resolver) IsLocalDomain(domain string) bool {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	if domain == "" || strings.HasPrefix(domain, "[") {
		return false
	}
	if domain == r.cfg.Hostname || domain == "localhost" {
		return true
	}
	t := r.cfg.Tables()
	return t.LocalHostNames.Has(domain) || t.Virtusertable.HasDomain(domain)
}

// resolution is the state of one Resolve call.
type resolution struct {
	r       *Resolver
	ctx     context.Context
	t       *maps.Tables
	res     Result
	seen    map[string]bool // expanded names and addresses: loops and duplicates
	targets map[string]bool
	looped  bool
}

// Resolve resolves a recipient. For a domain that is not local it returns the
// address as one TargetRemote with Local false. For a local domain or an
// unqualified name: virtusertable, then aliases, then accounts, recursively.
// An error is a *Rejection (refuse the recipient with it) or temporary.
func (r *Resolver) Resolve(ctx context.Context, a addr.Address) (Result, error) {
	s := &resolution{r: r, ctx: ctx, t: r.cfg.Tables(), seen: map[string]bool{}, targets: map[string]bool{}}
	s.res.Local = a.Domain == "" || r.IsLocalDomain(a.Domain)
	s.res.Trace = []string{a.String()}
	if !s.res.Local {
		s.res.Targets = []Target{{Kind: TargetRemote, Address: a}}
		return s.res, nil
	}
	if r.IsSRSAddress(a) {
		return r.reverseSRS(ctx, a)
	}
	err := s.address(a, 0, "")
	var rej *Rejection
	if err != nil && !errors.As(err, &rej) {
		// Temporary (an account lookup failed, ctx done): the whole recipient
		// is tried again later rather than delivered to part of its list.
		return Result{}, err
	}
	if len(s.res.Targets) > 0 {
		return s.res, nil
	}
	switch {
	case err != nil:
		return Result{}, err
	case len(s.res.Failed) > 0:
		return Result{}, s.res.Failed[0]
	case s.looped:
		return Result{}, &Rejection{554, "5.4.6", fmt.Sprintf("<%s>: alias loop", a)}
	}
	return Result{}, &Rejection{550, "5.1.1", fmt.Sprintf("<%s>: user unknown", a)}
}

func (s *resolution) add(t Target, key string) error {
	if s.targets[key] {
		return nil
	}
	if len(s.res.Targets) >= maxTargets {
		return &Rejection{552, "5.5.3", "Too many recipients after alias expansion"}
	}
	s.targets[key] = true
	s.res.Targets = append(s.res.Targets, t)
	return nil
}

// address resolves an address at a local domain (or unqualified), or adds a
// remote target.
func (s *resolution) address(a addr.Address, depth int, owner string) error {
	if depth > maxDepth {
		return &Rejection{554, "5.4.6", "Too many levels of aliases"}
	}
	if err := s.ctx.Err(); err != nil {
		return err
	}
	if a.Domain != "" && !s.r.IsLocalDomain(a.Domain) {
		s.res.Trace = append(s.res.Trace, "remote:"+a.String())
		return s.add(Target{Kind: TargetRemote, Address: a, Owner: owner}, "remote:"+strings.ToLower(a.String()))
	}
	key := "addr:" + strings.ToLower(a.String())
	if s.seen[key] {
		s.looped = true
		return nil
	}
	s.seen[key] = true
	if a.Domain != "" {
		if rhs, vkey, ok := s.t.Virtusertable.Lookup(a); ok {
			s.res.Trace = append(s.res.Trace, "virtusertable:"+vkey)
			return s.target(rhs, depth+1, owner, true)
		}
	}
	return s.localName(a.Local, depth+1, owner)
}

// target resolves one right-hand side: an error:, an address, or a local name.
func (s *resolution) target(rhs string, depth int, owner string, fromVirtuser bool) error {
	rhs = strings.TrimSpace(rhs)
	if rej, ok := ParseErrorTarget(rhs); ok {
		return rej
	}
	if strings.Contains(rhs, "@") {
		a, err := addr.ParsePath(rhs, true)
		if err != nil {
			return &Rejection{550, "5.1.3", fmt.Sprintf("Bad address %q in the tables", truncate(rhs, 60))}
		}
		return s.address(a, depth, owner)
	}
	if fromVirtuser && (strings.HasPrefix(rhs, "|") || strings.HasPrefix(rhs, "/") || strings.HasPrefix(rhs, ":include:")) {
		// Programs, files and includes come only from aliases (aliases(5)).
		return &Rejection{550, "5.7.1", "Programs and files are not allowed in virtusertable"}
	}
	return s.localName(rhs, depth, owner)
}

// localName resolves a local name through aliases to an account.
func (s *resolution) localName(name string, depth int, owner string) error {
	if depth > maxDepth {
		return &Rejection{554, "5.4.6", "Too many levels of aliases"}
	}
	// "\name" delivers to the account without aliasing (Sendmail's convention).
	noAlias := strings.HasPrefix(name, `\`)
	name = strings.ToLower(strings.TrimPrefix(name, `\`))
	if name == "" {
		return &Rejection{550, "5.1.3", "Empty local name"}
	}
	key := "name:" + name
	if !noAlias {
		if targets, ok := s.t.Aliases.Lookup(name); ok {
			if s.seen[key] {
				// A name that leads back to itself: deliver to the account of that
				// name if there is one (aliases(5): "pp: pp, pp@elsewhere"), else a loop.
				return s.account(name, owner, true)
			}
			s.seen[key] = true
			s.res.Trace = append(s.res.Trace, "alias:"+name)
			if o := s.listOwner(name); o != "" {
				owner = o
			}
			return s.expand(targets, depth, owner)
		}
	}
	return s.account(name, owner, false)
}

// listOwner returns who gets the errors of the alias list name, as Sendmail's
// alias() decides (alias.c; aliases(5) "owner-"): nobody without an
// owner-name alias; the owner-name alias itself when it is exactly one plain
// address (it then becomes the envelope sender); else "owner-name". The owner
// of an owner- alias is owner-owner. Unqualified names get the hostname.
func (s *resolution) listOwner(name string) string {
	ownerName := "owner-" + name
	if strings.HasPrefix(name, "owner-") {
		ownerName = "owner-owner"
	}
	targets, ok := s.t.Aliases.Lookup(ownerName)
	if !ok {
		return ""
	}
	owner := ownerName
	if len(targets) == 1 && !strings.ContainsAny(targets[0], ",:/|\"") {
		owner = strings.TrimPrefix(targets[0], `\`)
	}
	if !strings.Contains(owner, "@") {
		owner += "@" + s.r.cfg.Hostname
	}
	return owner
}

// expand resolves the members of an alias; a member that fails is remembered
// in Failed but does not stop the others. Only a temporary error is returned.
func (s *resolution) expand(targets []string, depth int, owner string) error {
	for _, t := range targets {
		var err error
		switch {
		case strings.HasPrefix(t, "|"):
			err = s.special(Target{Kind: TargetProgram, Command: strings.TrimSpace(t[1:]), Owner: owner}, s.r.cfg.AllowPrograms, "programs")
		case strings.HasPrefix(t, "/"):
			err = s.special(Target{Kind: TargetFile, Path: t, Owner: owner}, s.r.cfg.AllowFiles, "files")
		case strings.HasPrefix(strings.ToLower(t), ":include:"):
			err = s.include(strings.TrimSpace(t[len(":include:"):]), depth, owner)
		default:
			err = s.target(t, depth+1, owner, false)
		}
		if err != nil {
			var rej *Rejection
			if !errors.As(err, &rej) {
				return err // temporary: the whole recipient must be retried
			}
			s.res.Failed = append(s.res.Failed, err)
		}
	}
	return nil
}

func (s *resolution) special(t Target, allowed bool, what string) error {
	if !allowed {
		return &Rejection{550, "5.7.1", "Delivery to " + what + " is not allowed here"}
	}
	key := "prog:" + t.Command
	if t.Kind == TargetFile {
		key = "file:" + t.Path
	}
	return s.add(t, key)
}

// include reads an :include: file: addresses separated by commas or lines,
// '#' comments (aliases(5)).
func (s *resolution) include(path string, depth int, owner string) error {
	key := "include:" + path
	if s.seen[key] {
		s.looped = true
		return nil
	}
	s.seen[key] = true
	f, err := os.Open(path)
	if err != nil {
		return &Rejection{550, "5.3.0", fmt.Sprintf("Cannot open :include: file %s", path)}
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() || st.Size() > maxIncludeSize {
		// Not part of a list silently: the whole :include: is refused.
		return &Rejection{550, "5.3.0", fmt.Sprintf(":include: file %s is not a regular file of at most %d bytes", path, maxIncludeSize)}
	}
	var targets []string
	sc := bufio.NewScanner(io.LimitReader(f, maxIncludeSize))
	sc.Buffer(make([]byte, 4096), maxIncludeSize)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		for _, t := range strings.Split(line, ",") {
			if t = strings.TrimSpace(t); t != "" {
				targets = append(targets, t)
			}
		}
	}
	s.res.Trace = append(s.res.Trace, "include:"+path)
	return s.expand(targets, depth+1, owner)
}

// account ends a resolution at an account: the name without its +detail.
func (s *resolution) account(name, owner string, fromLoop bool) error {
	user, _, _ := addr.SplitDetail(name)
	ok, err := s.r.cfg.Accounts.AccountExists(s.ctx, user)
	if err != nil {
		return fmt.Errorf("looking up account %q: %w", user, err)
	}
	if !ok {
		if fromLoop {
			s.looped = true
			return nil
		}
		return &Rejection{550, "5.1.1", fmt.Sprintf("<%s>: user unknown", name)}
	}
	s.res.Trace = append(s.res.Trace, "account:"+user)
	return s.add(Target{Kind: TargetAccount, Account: user, Owner: owner}, "account:"+user)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// IsSRSAddress reports whether a looks like one of our SRS addresses (an SRS
// local part at the SRS domain), whether or not its signature is good.
func (r *Resolver) IsSRSAddress(a addr.Address) bool {
	return r.cfg.SRS != nil && srs.IsSRS(a.Local) && strings.EqualFold(strings.TrimSuffix(a.Domain, "."), r.cfg.SRS.Domain)
}

// reverseSRS resolves an address made by our SRS: the mail (a bounce, as a
// rule) goes to the address it stands for. One that we did not make, or made
// too long ago, is refused as an unknown user: anyone could otherwise use it
// to relay (the reason SRS addresses are signed).
func (r *Resolver) reverseSRS(ctx context.Context, a addr.Address) (Result, error) {
	orig, err := r.cfg.SRS.Reverse(a.String())
	if err != nil {
		return Result{}, &Rejection{550, "5.1.1", fmt.Sprintf("<%s>: invalid or expired SRS address", a)}
	}
	o, err := addr.ParsePath(orig, true)
	if err != nil {
		return Result{}, &Rejection{550, "5.1.1", fmt.Sprintf("<%s>: invalid SRS address", a)}
	}
	if srs.IsSRS(o.Local) && strings.EqualFold(o.Domain, r.cfg.SRS.Domain) {
		// An SRS address of ours inside another: one level is all we make.
		return Result{}, &Rejection{550, "5.1.1", fmt.Sprintf("<%s>: invalid SRS address", a)}
	}
	res, err := r.Resolve(ctx, o)
	if err != nil {
		return Result{}, err
	}
	res.Local = true // the SRS address itself is ours: no relay permission needed
	res.Trace = append([]string{a.String()}, res.Trace...)
	return res, nil
}
