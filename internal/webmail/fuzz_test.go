package webmail

import (
	"bytes"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/msg"
)

// FuzzRender runs what reading a hostile message runs — structure, body
// choice, attachment names, decoding, sanitising, quoting for a reply — on
// arbitrary bytes: no panic, and no script survives the sanitiser.
func FuzzRender(f *testing.F) {
	f.Add([]byte(htmlMail))
	f.Add([]byte(plainMail))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Transfer-Encoding: base64\r\nContent-Type: text/html; charset=iso-8859-1\r\n\r\nPHNjcmlwdD4=\r\n--x--\r\n"))
	f.Add([]byte("Subject: =?utf-8?b?////?= =?x-unknown?q?a?=\r\nContent-Type: text/plain; charset=\"utf-7\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=ZZ=\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		m := msg.ParseBytes(raw)
		rd := bytes.NewReader(raw)
		decodeHeader(m.Envelope.Subject)
		formatAddresses(m.Envelope.From)
		ls := leaves(m)
		html, plain := bodyParts(ls)
		attachments(ls, html, plain)
		for _, l := range ls {
			partFilename(l.Part)
		}
		if plain != nil {
			text, _ := partText(rd, plain.Part)
			quote(text)
		}
		if html != nil {
			text, _ := partText(rd, html.Part)
			clean := htmlPolicy.Sanitize(text)
			if strings.Contains(strings.ToLower(clean), "<script") {
				t.Fatalf("script survived: %q", clean)
			}
			htmlToText(text)
		}
	})
}
