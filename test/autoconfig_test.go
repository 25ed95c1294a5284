package test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// A mail program fetching its settings from the web listener gets the
// server's IMAP and submission ports for a local domain, and a 404 for
// anyone else's.
func TestAutoconfigDocument(t *testing.T) {
	in := newInstance(t, "pp")
	web, imap, sub := freePort(t), freePort(t), freePort(t)
	cfg, err := os.ReadFile(in.cfg)
	if err != nil {
		t.Fatal(err)
	}
	in.writeFile("posthorn.toml", mergeConfig(string(cfg), fmt.Sprintf("[web]\nlisten = %q\n[imap]\nlisten = %q\n[smtp]\nsubmission_listen = %q\n", web, imap, sub)))
	in.start()
	get := func(q string) (int, string) {
		t.Helper()
		c := http.Client{Timeout: 5 * time.Second}
		resp, err := c.Get("http://" + web + "/mail/config-v1.1.xml?emailaddress=" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("pp%40example.org")
	_, imapPort, _ := strings.Cut(imap, ":")
	_, subPort, _ := strings.Cut(sub, ":")
	for _, want := range []string{"<domain>example.org</domain>", `<incomingServer type="imap">`, "<port>" + imapPort + "</port>", "<socketType>STARTTLS</socketType>", "<port>" + subPort + "</port>", "<hostname>mx.example.org</hostname>"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("autoconfig for example.org: %d, no %q in\n%s", code, want, body)
		}
	}
	if code, _ := get("someone%40elsewhere.example"); code != 404 {
		t.Errorf("autoconfig for another domain: %d, want 404", code)
	}
}
