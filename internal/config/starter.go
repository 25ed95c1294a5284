package config

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
)

// Starter describes a new installation for StarterFiles.
type Starter struct {
	Hostname string // mx.example.org
	Domain   string // example.org
	Admin    string // the account that gets root's, postmaster's ... mail
	DataDir  string // as written into the config (may be relative to it)
	MapsDir  string // likewise
	// Listen addresses; empty ones are left out of the file.
	SMTPListen []string
	CertFile   string
	KeyFile    string
}

// StarterFiles returns the files `posthorn init` (and `serve --dev`) writes: a
// commented posthorn.toml and the Sendmail tables, by file name.
func StarterFiles(s Starter) map[string]string {
	return map[string]string{
		"posthorn.toml":    starterConfig(s),
		"aliases":          starterAliases(s),
		"access":           starterAccess(s),
		"local-host-names": starterLocalHostNames(s),
		"virtusertable":    starterVirtusertable(s),
		"relay-domains":    starterRelayDomains(),
		// Written with mode 0600: whoever has it can make addresses that
		// this server forwards.
		"srs.secret": newSecret(),
	}
}

// newSecret returns a random SRS secret, one line.
func newSecret() string {
	var b [24]byte
	rand.Read(b[:])
	return base64.RawStdEncoding.EncodeToString(b[:]) + "\n"
}

func quoteList(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func starterConfig(s Starter) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# posthorn.toml — the main configuration of posthorn.
# Relative paths are taken from the directory of this file.
# After a change: "posthorn check" validates it; restart "posthorn serve" to apply.
# (The tables in maps_dir need no restart: they are reloaded when they change.)

# This server's own fully qualified name: the SMTP greeting, Received: headers.
hostname = %q

# Where the mail store (accounts, mailboxes, messages) and the queue live.
data_dir = %q

# Where the Sendmail tables are: access, aliases, local-host-names,
# virtusertable (and relay-domains, mailertable), in Sendmail's own formats.
maps_dir = %q

# When started as root: the user to become after the ports are open.
# run_as = "posthorn"

# log_level = "info"   # debug, info, warn, error

[smtp]
# Mail from the Internet for your domains (port 25).
`, s.Hostname, s.DataDir, s.MapsDir)
	if len(s.SMTPListen) > 0 {
		fmt.Fprintf(&b, "listen = %s\n", quoteList(s.SMTPListen))
	} else {
		b.WriteString("listen = [\"0.0.0.0:25\", \"[::]:25\"]\n")
	}
	b.WriteString(`# max_message_bytes = 52428800   # 50 MiB
# max_recipients = 100           # per message (RFC 5321 wants at least 100)
# max_connections_per_ip = 50
# max_connections = 10000
# command_timeout = "5m"
# data_timeout = "10m"

# If your ISP blocks outgoing port 25, send everything through its relay
# (Sendmail's SMART_HOST). "[host]" skips the MX lookup; ":port" picks a port.
# smart_host = "[smtp.your-isp.example]:587"
# smart_host_user = "you@your-isp.example"
# smart_host_password_file = "/etc/posthorn/smarthost.password"

[imap]
# Mail programs (Thunderbird, a phone, mbsync, mutt) read and sort mail here.
# Off until listed. Passwords are taken over TLS, or from 127.0.0.1 (see [auth]).
# listen = ["0.0.0.0:143", "[::]:143"]       # STARTTLS, then a login
# tls_listen = ["0.0.0.0:993", "[::]:993"]   # TLS from the first byte; needs [tls]
# append_limit = "64MiB"     # the largest message a client may upload (APPEND)
# idle_timeout = "30m"       # a silent logged-in client is cut after this (30m at least)
# max_connections = 20000     # sessions in total; max_connections_per_ip = 100

[pop3]
# Mail programs download the INBOX here (fetchmail, a phone's POP account).
# Off until listed. Passwords are taken over TLS, or from 127.0.0.1 (see [auth]).
# listen = ["0.0.0.0:110", "[::]:110"]       # STLS, then a login
# tls_listen = ["0.0.0.0:995", "[::]:995"]   # TLS from the first byte; needs [tls]

[aliases]
# "|command" and "/path/to/file" targets in aliases are refused unless enabled.
# allow_programs = false
# allow_files = false
# program_timeout = "1m"

[tls]
# The certificate for STARTTLS. Without one, mail is accepted in clear text only.
`)
	if s.CertFile != "" {
		fmt.Fprintf(&b, "cert_file = %q\nkey_file = %q\n", s.CertFile, s.KeyFile)
	} else {
		b.WriteString("# cert_file = \"/etc/posthorn/tls/fullchain.pem\"\n# key_file = \"/etc/posthorn/tls/privkey.pem\"\n")
		b.WriteString(`# Or, instead of the files, a certificate from Let's Encrypt, renewed by itself.
# Port 80 of each name must reach posthorn (http-01), and cert_file stays unset.
# acme = true
# acme_email = "postmaster@` + s.Domain + `"
# acme_domains = ["` + s.Hostname + `"]
# acme_http_listen = ":80"
`)
	}
	b.WriteString(`
[queue]
# Mail for other domains waits here until it is delivered or bounced.
# queue_lifetime = "5d"      # then the sender gets a failure report
# delay_warning = "4h"       # the sender hears that it is still waiting
# min_backoff = "5m"         # the wait between attempts doubles from this...
# max_backoff = "1h"         # ...up to this
# max_connections = 100
# max_connections_per_destination = 10

[smtpc]
# How posthorn connects to other servers.
# port = 25
# ca_file = "/etc/posthorn/isp-ca.pem"   # more roots, for a smart host's private CA
# connect_timeout = "30s"

[srs]
# Forwarded mail (aliases or virtusertable pointing elsewhere) leaves with a
# rewritten envelope sender (SRS), so that SPF passes where it goes; bounces to
# those addresses come back here and go on to the real sender. Keep it secret.
secret_file = "srs.secret"
# domain = "` + s.Hostname + `"   # the domain of the rewritten addresses

[dns]
# Send every DNS query to this server instead of the system's resolver.
# resolver = "127.0.0.1:53"

[auth]
# Passwords sent whole (AUTH PLAIN/LOGIN, POP3 USER/PASS, IMAP LOGIN) are
# refused on unencrypted connections, except from 127.0.0.1 and ::1.
# SCRAM-SHA-256 never sends the password and works everywhere.
# allow_plaintext = false

[dkim]
# Mail sent from your domains (logged-in users, "posthorn sendmail", the
# webmail) is signed with an Ed25519 and an RSA key per domain. "posthorn init"
# made the keys; "posthorn dkim keygen DOMAIN --selector S" makes new ones
# (the newest sign); "posthorn dns-records" prints the TXT records to publish.
# sign = true
# keys_dir = "data/dkim"        # default: data_dir/dkim

[authcheck]
# SPF, DKIM and DMARC of mail from outside (not logged in, not 127.0.0.1 or an
# access RELAY network); the result goes in an Authentication-Results field.
# enabled = true
# dmarc_reject = "reject"         # p=reject failures: reject (550 5.7.1) or quarantine
# dmarc_quarantine = "quarantine" # p=quarantine failures: quarantine (the Junk mailbox), accept
# spf_fail = "reject"             # SPF -all failure, no DMARC record: reject, quarantine, accept

[antispam]
# Off until set, except the per-address limits.
# dnsbl = ["zen.spamhaus.org"]    # blocklists asked at connect
# greylist = false                # defer the first message of each sender/recipient/network
# greylist_delay = "5m"
# greylist_expiry = "4h"
# early_talker_wait = "0s"        # e.g. "3s": drop clients that talk before the greeting
# helo_checks = false             # refuse HELO names that are not FQDNs or claim to be us
# require_fcrdns = false          # refuse clients without forward-confirmed reverse DNS
# connections_per_minute = 20000  # per client address
# messages_per_minute = 20000

[metrics]
# Prometheus metrics at /metrics and a health check at /healthz, over plain
# HTTP with no password: a loopback or private address only, never a public one.
# listen = "127.0.0.1:9090"
`)
	return b.String()
}

func starterAliases(s Starter) string {
	return fmt.Sprintf(`# aliases — local names that are other names (aliases(5), as Sendmail reads it).
#   name: target, target, ...
# A target is an account, another alias, an address elsewhere (user@example.net),
# ":include:/path/to/list", or — when [aliases] allows them — "|command" and "/file".
# Lines that start with whitespace continue the previous one.
# Changes are picked up by the running server within seconds; "posthorn newaliases"
# checks the file and prints its summary, as Sendmail's does.

# Required by RFC 5321 and RFC 2142.
MAILER-DAEMON:	postmaster
postmaster:	root
abuse:		root
security:	root
hostmaster:	root
noc:		root

# Mail for the system's own users goes to root.
bin:		root
daemon:		root
games:		root
man:		root
news:		root
uucp:		root
operator:	root
nobody:		root
mailnull:	postmaster
smmsp:		postmaster
sshd:		root
system:		root
toor:		root
tty:		root
www-data:	root
usenet:		news
ftp:		root

# The web server's mail.
webmaster:	root
www:		webmaster

# And root's mail goes to a person.
root:		%s
`, s.Admin)
}

func starterAccess(s Starter) string {
	return `# access — who may connect, send, receive and relay (Sendmail's access table).
#   key     value
# Keys: an IPv4 address or a prefix of whole octets (192.168.69), IPv6:address,
# a host or domain name (covers its subdomains), user@domain, user@, with an
# optional tag: Connect: (the client), From: (MAIL FROM), To: (RCPT TO).
# Values: OK, RELAY, REJECT, DISCARD, SKIP, ERROR:"550 text", ERROR:5.7.1:550 text.
# The most specific key wins.
#
# 127.0.0.1 and ::1 may always relay. To let your own network send mail out
# through this server, name it:
# 192.168.69		RELAY
#
# Refuse a spammer's domain:
# From:spammer.example	REJECT
`
}

func starterLocalHostNames(s Starter) string {
	return fmt.Sprintf(`# local-host-names — the domains this server receives mail for, one per line.
# (The hostname in posthorn.toml is always local.)
%s
`, s.Domain)
}

func starterVirtusertable(s Starter) string {
	return fmt.Sprintf(`# virtusertable — addresses at your domains, and where their mail goes.
#   address			target
# The target is an account or alias, an address elsewhere, or
# "error:nouser text" to refuse with that text. %%1 is the user part, %%2 the
# +detail, %%3 "+detail". "@domain" catches every other address at a domain
# (spammers will then use your domain for their bounces: prefer one line each).
#
# info@%[1]s		%[2]s
# shop-x7k2@%[1]s		%[2]s
# leaked@%[1]s		error:nouser No such user here
# @%[1]s			%[2]s
`, s.Domain, s.Admin)
}

func starterRelayDomains() string {
	return `# relay-domains — domains (and their subdomains) this server relays mail to,
# and networks (IP prefixes) it relays mail from, one per line.
`
}
