// Package mailauth authenticates received mail and signs sent mail: SPF
// (RFC 7208) for the MAIL FROM and HELO identities, DKIM (RFC 6376, RFC 8463)
// verification of every signature and dual Ed25519 + RSA signing, DMARC
// (RFC 7489) with the organisational domain from the Public Suffix List, and
// the Authentication-Results header field (RFC 8601) that records it all.
//
// It is a library: every DNS query goes through a dnsutil.Resolver, and the
// SMTP server calls Checker.Check once per message and acts on the Verdict.
package mailauth
