package dsn

import (
	"strings"
	"testing"
)

// FuzzParse feeds Parse hostile input: it must return an error or a report
// that keeps Parse's promises, never panic.
func FuzzParse(f *testing.F) {
	f.Add([]byte(foreignDSN))
	for _, r := range []*Report{
		report(failed("bob@example.net"), delayed("carol@example.net")),
		report(succeeded("用户@例子.广告", ActionDelivered)),
	} {
		r.ReturnFull = true
		msg, err := Build(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(msg)
	}
	f.Add([]byte("Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\n\r\n--b--"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			return
		}
		if p.ReportType != "delivery-status" && p.ReportType != "global-delivery-status" {
			t.Errorf("report-type %q", p.ReportType)
		}
		if p.PerMessage == nil || len(p.Recipients) == 0 {
			t.Errorf("per-message %v, %d recipients", p.PerMessage, len(p.Recipients))
		}
		for i, g := range p.Recipients {
			if g.Get("Final-Recipient") == "" || g.Get("Action") == "" || g.Get("Status") == "" {
				t.Errorf("group %d lacks a required field: %v", i, g)
			}
		}
	})
}

// FuzzBuild feeds Build the parts of a report that come from the network
// (the remote server's reply, the ORCPT, the ENVID) and checks that the
// notice still parses to exactly the fields we wrote: no injected field, no
// extra recipient group.
func FuzzBuild(f *testing.F) {
	f.Add("550 5.1.1 no such user", "rfc822;bob@example.net", "QQ314159")
	f.Add("550 x\r\nX-Injected: 1\r\n\r\nFinal-Recipient: rfc822; e@x", "rfc822;a\r\nAction: delivered", "a\r\nb")
	f.Add("\xff\xfe\x00--=_posthorn_", "utf-8;ü@x", "+2B=")
	f.Fuzz(func(t *testing.T, diag, orcpt, envid string) {
		r := report(failed("bob@example.net"))
		r.Recipients[0].Diagnostic, r.Recipients[0].Original, r.EnvID = diag, orcpt, envid
		r.ReturnFull = true
		msg, err := Build(r)
		if err != nil {
			t.Fatalf("Build: %v", err)
		}
		for i, line := range strings.Split(string(msg), "\r\n") {
			if strings.ContainsAny(line, "\r\n") || len(line) >= 998 {
				t.Fatalf("line %d: %q", i+1, line)
			}
		}
		p, err := Parse(msg)
		if err != nil {
			t.Fatalf("Parse: %v\n%q", err, msg)
		}
		if len(p.Recipients) != 1 {
			t.Fatalf("%d recipient groups", len(p.Recipients))
		}
		allowed := map[string]bool{"Original-Recipient": true, "Final-Recipient": true, "Action": true,
			"Status": true, "Remote-Mta": true, "Diagnostic-Code": true, "Last-Attempt-Date": true}
		for k, vs := range p.Recipients[0] {
			if !allowed[k] || len(vs) != 1 {
				t.Errorf("recipient field %s %q", k, vs)
			}
		}
		if p.Recipients[0].Get("Action") != "failed" || p.Recipients[0].Get("Status") != "5.1.1" {
			t.Errorf("recipient group %v", p.Recipients[0])
		}
		for k := range p.PerMessage {
			switch k {
			case "Original-Envelope-Id", "Reporting-Mta", "Arrival-Date", "X-Posthorn-Queue-Id":
			default:
				t.Errorf("per-message field %s", k)
			}
		}
		if string(p.Returned) != original {
			t.Errorf("returned %q", p.Returned)
		}
	})
}
