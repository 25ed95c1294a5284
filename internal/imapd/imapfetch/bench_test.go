package imapfetch

import (
	"io"
	"testing"

	"github.com/posthorn/posthorn/internal/imapd/imapwire"
	"github.com/posthorn/posthorn/internal/msg"
)

// BenchmarkEnvelopeBodyStructure is the per-message work of
// UID FETCH 1:* (ENVELOPE BODYSTRUCTURE) once the structure is decoded.
func BenchmarkEnvelopeBodyStructure(b *testing.B) {
	m := msg.ParseBytes([]byte(nested))
	w := imapwire.NewWriter(io.Discard)
	b.ReportAllocs()
	for b.Loop() {
		Envelope(w, &m.Envelope).SP()
		BodyStructure(w, &m.Part, Options{})
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
}
