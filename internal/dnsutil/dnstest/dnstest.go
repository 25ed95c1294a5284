// Package dnstest is a small authoritative DNS server for tests: it answers from
// records given in code, on 127.0.0.1, over UDP and TCP on one port. Point
// `[dns] resolver` (or dnsutil.New) at Addr.
package dnstest

import (
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// Server serves the records added to it. Names it has no record of get NXDOMAIN.
type Server struct {
	Addr string

	mu      sync.Mutex
	records map[string][]dns.RR // by lower-case FQDN
	udp     *dns.Server
	tcp     *dns.Server
}

// Start starts a server on 127.0.0.1 and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// Listen starts a server on addr (port 0 picks a free one for both UDP and TCP).
func Listen(addr string) (*Server, error) {
	s := &Server{records: map[string][]dns.RR{}}
	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	for range 20 {
		pc, err = net.ListenPacket("udp", addr)
		if err != nil {
			return nil, err
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		return nil, err
	}
	s.Addr = pc.LocalAddr().String()
	h := dns.HandlerFunc(s.serve)
	s.udp = &dns.Server{PacketConn: pc, Handler: h}
	s.tcp = &dns.Server{Listener: ln, Handler: h}
	go s.udp.ActivateAndServe()
	go s.tcp.ActivateAndServe()
	return s, nil
}

// Close stops the server.
func (s *Server) Close() {
	s.udp.Shutdown()
	s.tcp.Shutdown()
}

// Add adds records in zone-file syntax, one per string:
// "mx.example.org. 300 IN A 127.0.0.1", "2.0.0.127.in-addr.arpa. PTR host.example.".
func (s *Server) Add(rrs ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, text := range rrs {
		rr, err := dns.NewRR(text)
		if err != nil {
			return err
		}
		name := strings.ToLower(rr.Header().Name)
		s.records[name] = append(s.records[name], rr)
	}
	return nil
}

// MustAdd is Add that fails the test on a bad record.
func (s *Server) MustAdd(t testing.TB, rrs ...string) {
	t.Helper()
	if err := s.Add(rrs...); err != nil {
		t.Fatal(err)
	}
}

// AddPTR adds a PTR record for ip pointing at name, and an A/AAAA record from
// name back to ip, so that the name is forward-confirmed.
func (s *Server) AddPTR(ip, name string) error {
	rev, err := dns.ReverseAddr(ip)
	if err != nil {
		return err
	}
	typ := "A"
	if strings.Contains(ip, ":") {
		typ = "AAAA"
	}
	return s.Add(rev+" 60 IN PTR "+dns.Fqdn(name), dns.Fqdn(name)+" 60 IN "+typ+" "+ip)
}

func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	s.mu.Lock()
	rrs, exists := s.records[name]
	// A name with a CNAME answers with it and what its target has, as a
	// recursive resolver does (RFC 1034 section 4.3.2), a few levels deep.
	for hops := 0; hops < 8; hops++ {
		var next string
		for _, rr := range rrs {
			switch {
			case rr.Header().Rrtype == q.Qtype || q.Qtype == dns.TypeANY:
				m.Answer = append(m.Answer, dns.Copy(rr))
			case rr.Header().Rrtype == dns.TypeCNAME:
				m.Answer = append(m.Answer, dns.Copy(rr))
				next = strings.ToLower(rr.(*dns.CNAME).Target)
			}
		}
		if next == "" || q.Qtype == dns.TypeCNAME {
			break
		}
		rrs = s.records[next]
	}
	s.mu.Unlock()
	if !exists {
		m.Rcode = dns.RcodeNameError
	}
	w.WriteMsg(m)
}
