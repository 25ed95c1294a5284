package route

import (
	"context"
	"errors"
	"strings"

	"github.com/posthorn/posthorn/internal/addr"
)

// Owns reports whether a is one of account's addresses, so that a user logged
// in as account may send mail as a (the envelope sender and the From: header
// of submitted mail; ARCHITECTURE.md, "Sender ownership on submission").
//
// An address is the account's when its domain is local and mail sent to it
// reaches the account and no other account:
//
//   - the account's own name, with or without +detail, at each local domain
//     (the hostname, local-host-names, virtusertable domains): pp@example.org,
//     pp+lists@example.org; also when pp's mail is forwarded away
//     ("pp: pp@elsewhere.example" in aliases), as long as it reaches no other
//     account;
//   - every virtusertable or aliases address that resolves to it:
//     "info@example.org pp", "webmaster: pp", and a catch-all
//     "@example.org pp" for the addresses of that domain not listed on their
//     own.
//
// An address that also reaches another account is nobody's: a list
// "staff: pp, bob" is not pp's to speak for, or any member could write as the
// whole list (and as the other members' shared address). Copies forwarded to
// remote addresses, files or programs do not count against ownership: they
// reach no other user of this server. An address the tables refuse (user
// unknown, error:) is nobody's. A remote domain is never the account's.
//
// The error is temporary (an account lookup failed): the caller answers 4xx.
func (r *Resolver) Owns(ctx context.Context, account string, a addr.Address) (bool, error) {
	account = strings.ToLower(account)
	if account == "" || a.Domain == "" || !r.IsLocalDomain(a.Domain) {
		return false, nil
	}
	res, err := r.Resolve(ctx, a)
	var rej *Rejection
	if errors.As(err, &rej) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	reaches := false
	for _, t := range res.Targets {
		if t.Kind != TargetAccount {
			continue
		}
		if t.Account != account {
			return false, nil
		}
		reaches = true
	}
	if reaches {
		return true, nil
	}
	// Forwarded away entirely: still the account's own name.
	user, _, _ := addr.SplitDetail(strings.ToLower(a.Local))
	return user == account, nil
}
