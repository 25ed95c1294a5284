package autoconfig

import (
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The document a client fetches, read back as Thunderbird would: the
// servers of the local domain with their ports and TLS; other domains 404.
func TestDocument(t *testing.T) {
	h := Handler(Config{
		Hostname: "mx.example.org",
		Domains:  func() []string { return []string{"example.org", "Example.NET"} },
		IMAPS:    993, IMAP: 143, POP3S: 995, Submissions: 465, Submission: 587,
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	get := func(path, host string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	for _, tc := range []struct{ path, host string }{
		{"/mail/config-v1.1.xml?emailaddress=pp%40example.net", ""},
		{"/mail/config-v1.1.xml", "autoconfig.example.net"},
		{"/.well-known/autoconfig/mail/config-v1.1.xml", "example.net:443"},
	} {
		resp, body := get(tc.path, tc.host)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/xml") {
			t.Fatalf("%s (Host %s): %d %s", tc.path, tc.host, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		var doc struct {
			Version  string `xml:"version,attr"`
			Provider struct {
				Domain   string `xml:"domain"`
				Incoming []struct {
					Type     string `xml:"type,attr"`
					Host     string `xml:"hostname"`
					Port     int    `xml:"port"`
					Socket   string `xml:"socketType"`
					Username string `xml:"username"`
				} `xml:"incomingServer"`
				Outgoing []struct {
					Port   int    `xml:"port"`
					Socket string `xml:"socketType"`
				} `xml:"outgoingServer"`
			} `xml:"emailProvider"`
		}
		if err := xml.Unmarshal([]byte(body), &doc); err != nil {
			t.Fatalf("%v\n%s", err, body)
		}
		p := doc.Provider
		if doc.Version != "1.1" || p.Domain != "example.net" || len(p.Incoming) != 3 || len(p.Outgoing) != 2 {
			t.Fatalf("document:\n%s", body)
		}
		if in := p.Incoming[0]; in.Type != "imap" || in.Host != "mx.example.org" || in.Port != 993 || in.Socket != "SSL" || in.Username != "%EMAILLOCALPART%" {
			t.Errorf("first incoming server %+v", in)
		}
		if p.Incoming[2].Type != "pop3" || p.Incoming[2].Port != 995 || p.Outgoing[0].Port != 465 || p.Outgoing[1].Socket != "STARTTLS" {
			t.Errorf("servers %+v %+v", p.Incoming, p.Outgoing)
		}
	}
	for _, q := range []string{"?emailaddress=someone%40gmail.com", "?emailaddress=nodomain", ""} {
		if resp, _ := get("/mail/config-v1.1.xml"+q, "mx.example.org"); resp.StatusCode != 404 {
			t.Errorf("%q: %d, want 404", q, resp.StatusCode)
		}
	}
	req, _ := http.NewRequest("POST", srv.URL+"/mail/config-v1.1.xml?emailaddress=a%40example.org", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 405 {
		t.Errorf("POST: %v %v", resp.StatusCode, err)
	}
}
