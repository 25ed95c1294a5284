// Package autoconfig serves the configuration document mail programs fetch
// to set themselves up from an address alone: Thunderbird's "autoconfig"
// (clientConfig version 1.1, fetched from
// http://autoconfig.DOMAIN/mail/config-v1.1.xml and
// https://DOMAIN/.well-known/autoconfig/mail/config-v1.1.xml), which many
// other clients read too. It complements the SRV records of RFC 6186 that
// `posthorn dns-records` prints.
package autoconfig

import (
	"encoding/xml"
	"net"
	"net/http"
	"strconv"
	"strings"
)

// Paths are where clients look for the document.
var Paths = []string{"/mail/config-v1.1.xml", "/.well-known/autoconfig/mail/config-v1.1.xml"}

// Config is what the server offers. A port of 0 is a service not offered.
type Config struct {
	Hostname string // the server's name, as in its certificate
	// Domains are the local domains; a request for another domain is
	// answered 404 (the document would be a lie about someone else's mail).
	Domains                 func() []string
	IMAPS, IMAP             int // implicit TLS (993), STARTTLS (143)
	POP3S, POP3             int // implicit TLS (995), STARTTLS (110)
	Submissions, Submission int // implicit TLS (465), STARTTLS (587)
}

type server struct {
	XMLName        xml.Name `xml:"incomingServer"`
	Type           string   `xml:"type,attr"`
	Hostname       string   `xml:"hostname"`
	Port           int      `xml:"port"`
	SocketType     string   `xml:"socketType"`
	Authentication string   `xml:"authentication"`
	Username       string   `xml:"username"`
}

type outgoing struct {
	XMLName        xml.Name `xml:"outgoingServer"`
	Type           string   `xml:"type,attr"`
	Hostname       string   `xml:"hostname"`
	Port           int      `xml:"port"`
	SocketType     string   `xml:"socketType"`
	Authentication string   `xml:"authentication"`
	Username       string   `xml:"username"`
}

type provider struct {
	ID          string     `xml:"id,attr"`
	Domain      string     `xml:"domain"`
	DisplayName string     `xml:"displayName"`
	Incoming    []server   `xml:"incomingServer"`
	Outgoing    []outgoing `xml:"outgoingServer"`
}

type clientConfig struct {
	XMLName  xml.Name `xml:"clientConfig"`
	Version  string   `xml:"version,attr"`
	Provider provider `xml:"emailProvider"`
}

// Handler serves the document for the domain of the emailaddress query
// parameter, or of the Host the client asked ("autoconfig.DOMAIN").
func Handler(c Config) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		domain := requestDomain(r)
		if domain == "" || !c.local(domain) {
			http.NotFound(w, r)
			return
		}
		doc, err := xml.MarshalIndent(c.document(domain), "", "  ")
		if err != nil {
			http.Error(w, "cannot build the document", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/xml; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Write([]byte(xml.Header))
		w.Write(doc)
		w.Write([]byte("\n"))
	})
}

// requestDomain is the mail domain asked for, lower-case, or "".
func requestDomain(r *http.Request) string {
	if a := r.URL.Query().Get("emailaddress"); a != "" {
		if i := strings.LastIndexByte(a, '@'); i >= 0 {
			return strings.ToLower(strings.TrimSuffix(a[i+1:], "."))
		}
		return ""
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if d, ok := strings.CutPrefix(host, "autoconfig."); ok {
		return d
	}
	return host
}

func (c Config) local(domain string) bool {
	if c.Domains == nil {
		return false
	}
	for _, d := range c.Domains() {
		if strings.EqualFold(d, domain) {
			return true
		}
	}
	return false
}

func (c Config) document(domain string) clientConfig {
	p := provider{ID: domain, Domain: domain, DisplayName: domain + " (" + c.Hostname + ")"}
	// The account name is the address's local part (posthorn's accounts
	// are named like the local part of their main address).
	const user, auth = "%EMAILLOCALPART%", "password-cleartext"
	in := func(typ string, port int, socket string) {
		if port > 0 {
			p.Incoming = append(p.Incoming, server{Type: typ, Hostname: c.Hostname, Port: port, SocketType: socket, Authentication: auth, Username: user})
		}
	}
	// Implicit TLS first: RFC 8314 section 3.3 prefers it.
	in("imap", c.IMAPS, "SSL")
	in("imap", c.IMAP, "STARTTLS")
	in("pop3", c.POP3S, "SSL")
	in("pop3", c.POP3, "STARTTLS")
	out := func(port int, socket string) {
		if port > 0 {
			p.Outgoing = append(p.Outgoing, outgoing{Type: "smtp", Hostname: c.Hostname, Port: port, SocketType: socket, Authentication: auth, Username: user})
		}
	}
	out(c.Submissions, "SSL")
	out(c.Submission, "STARTTLS")
	return clientConfig{Version: "1.1", Provider: p}
}

// FirstPort is the port of the first listener address ("0.0.0.0:993");
// 0 when there is none.
func FirstPort(addrs []string) int {
	if len(addrs) == 0 {
		return 0
	}
	_, p, err := net.SplitHostPort(addrs[0])
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}
