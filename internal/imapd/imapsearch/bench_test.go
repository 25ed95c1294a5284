package imapsearch

import (
	"context"
	"encoding/base64"
	"fmt"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/store"
)

var benchWords = strings.Fields("the of and to in is it that for on with as was at by be this from have or an are not which but all they were one we there can their has been if more when will would who so no")

// benchMessage is a synthetic message of about 4 KiB: most plain text, one
// in ten quoted-printable, one in ten multipart/alternative with a base64
// part. One message in a hundred holds the searched word.
func benchMessage(r *rand.Rand, i int) []byte {
	var text strings.Builder
	for text.Len() < 3500 {
		for j := 0; j < 12; j++ {
			text.WriteString(benchWords[r.Intn(len(benchWords))])
			text.WriteByte(' ')
		}
		if i%100 == 7 && text.Len() > 2000 && !strings.Contains(text.String(), "Walrus") {
			text.WriteString("Walrus ")
		}
		text.WriteString("\n")
	}
	head := fmt.Sprintf("Date: Mon, 7 Feb 1994 21:52:25 -0800\nFrom: Sender %d <s%d@example.org>\nTo: r@example.net\nSubject: message number %d\nMessage-ID: <%d@example.org>\nMIME-Version: 1.0\n", i, i, i, i)
	switch i % 10 {
	case 3:
		qp := strings.ReplaceAll(text.String(), "\n", "=\n")
		return crlf(head + "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n" + qp)
	case 6:
		b64 := base64.StdEncoding.EncodeToString([]byte(text.String()))
		var lines strings.Builder
		for len(b64) > 76 {
			lines.WriteString(b64[:76] + "\n")
			b64 = b64[76:]
		}
		lines.WriteString(b64 + "\n")
		return crlf(head + "Content-Type: multipart/alternative; boundary=bb\n\n--bb\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n" +
			lines.String() + "--bb\nContent-Type: text/html; charset=utf-8\n\n<p>short</p>\n--bb--\n")
	}
	return crlf(head + "Content-Type: text/plain; charset=utf-8\n\n" + text.String())
}

// BenchmarkSearchBody is UID SEARCH BODY word over 5,000 messages of 4 KiB
// held in memory (the store's page cache stands in for memory in a real
// server). It reports ns/message.
func BenchmarkSearchBody(b *testing.B) {
	const n = 5000
	r := rand.New(rand.NewSource(1))
	raws := make([][]byte, n)
	infos := make([]store.MessageInfo, n)
	for i := range raws {
		raws[i] = benchMessage(r, i)
		infos[i] = store.MessageInfo{UID: uint32(i + 1), InternalDate: time.Unix(int64(i), 0), Size: int64(len(raws[i]))}
	}
	msgs, src := mailbox(raws, infos, nil)
	key := parseKey(b, "BODY walrus")
	env := Env{MaxSeq: n, MaxUID: n}
	found, err := Search(context.Background(), key, msgs, src, env)
	if err != nil {
		b.Fatal(err)
	}
	if len(found) != n/100 {
		b.Fatalf("found %d, want %d", len(found), n/100)
	}
	b.ResetTimer()
	for b.Loop() {
		src.opened = src.opened[:0]
		if _, err := Search(context.Background(), key, msgs, src, env); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/message")
}
