package mailauth

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"testing"
)

// FuzzVerifyDKIM: any header and body, with a key record served for every
// selector, gives results or an error, never a panic.
func FuzzVerifyDKIM(f *testing.F) {
	f.Add([]byte("DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=s; h=from; bh=AAAA; b=AAAA\r\nFrom: a@example.org\r\n\r\nbody\r\n"))
	f.Add([]byte("DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; l=3; d=x; s=y; h=From:From:to; bh=; b=AA==\r\nFrom: a\r\n\tb\r\n\r\n \t \r\n\r\n"))
	f.Add([]byte("dkim-signature:b=;b=\nfrom:\n\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		if len(msg) > 1<<16 {
			return
		}
		r := txtResolver{"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="}
		VerifyDKIM(context.Background(), r, bytes.NewReader(msg), 5)
	})
}

// txtResolver answers every TXT query with its records.
type txtResolver []string

func (r txtResolver) LookupTXT(context.Context, string) ([]string, error) { return r, nil }
func (txtResolver) LookupPTR(context.Context, netip.Addr) ([]string, error) {
	return nil, &net.DNSError{Err: "no", IsNotFound: true}
}
func (txtResolver) LookupIP(context.Context, string) ([]netip.Addr, error) {
	return nil, &net.DNSError{Err: "no", IsNotFound: true}
}
func (txtResolver) LookupMX(context.Context, string) ([]*net.MX, error) {
	return nil, &net.DNSError{Err: "no", IsNotFound: true}
}
