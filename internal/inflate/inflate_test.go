package inflate

import (
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"os"
	"testing"
	"time"
)

// Round trips through the standard library's compressor at every level,
// with data that needs stored, fixed and dynamic blocks and distances
// across the whole window.
func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 200_000)
	for i := range random {
		random[i] = byte(rng.IntN(256))
	}
	text := bytes.Repeat([]byte("a1 UID FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE)\r\n"), 5000)
	mixed := append(append([]byte{}, text[:70_000]...), random[:50_000]...)
	mixed = append(mixed, text[:40_000]...)
	for name, data := range map[string][]byte{"empty": nil, "one": {'x'}, "random": random, "text": text, "mixed": mixed} {
		for _, level := range []int{flate.NoCompression, flate.BestSpeed, flate.DefaultCompression, flate.BestCompression, flate.HuffmanOnly} {
			var buf bytes.Buffer
			w, _ := flate.NewWriter(&buf, level)
			w.Write(data)
			w.Close()
			got, err := io.ReadAll(NewReader(bufio.NewReader(&buf)))
			if err != nil {
				t.Fatalf("%s level %d: %v", name, level, err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("%s level %d: %d octets back, %d in", name, level, len(got), len(data))
			}
		}
	}
}

// Each batch of commands a client flushed with zlib's Z_PARTIAL_FLUSH
// comes out whole before the next batch is sent. testdata/partial-flush.bin
// was made by Python's zlib (see the script in the commit that added it):
// batches of FETCH, STORE and APPEND commands, level 6, raw deflate.
func TestPartialFlushBatches(t *testing.T) {
	data, err := os.ReadFile("testdata/partial-flush.bin")
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	z := NewReader(bufio.NewReader(pr))
	out := make(chan []byte, 1000)
	go func() {
		for {
			buf := make([]byte, 4096)
			n, err := z.Read(buf)
			if n > 0 {
				out <- buf[:n]
			}
			if err != nil {
				close(out)
				return
			}
		}
	}()
	for batch := 0; len(data) > 0; batch++ {
		n := binary.BigEndian.Uint32(data)
		comp := data[4 : 4+n]
		data = data[4+n:]
		m := binary.BigEndian.Uint32(data)
		plain := data[4 : 4+m]
		data = data[4+m:]
		go pw.Write(comp)
		var got []byte
		for len(got) < len(plain) {
			select {
			case b := <-out:
				got = append(got, b...)
			case <-time.After(5 * time.Second):
				t.Fatalf("batch %d: %d of %d octets came out; the reader waits for input the client has not sent", batch, len(got), len(plain))
			}
		}
		if !bytes.Equal(got, plain) {
			t.Fatalf("batch %d: got %q, want %q", batch, got, plain)
		}
	}
	pw.Close()
}

func TestCorrupt(t *testing.T) {
	for name, in := range map[string][]byte{
		"reserved block type": {0x07},
		"stored length check": {0x01, 0x05, 0x00, 0x05, 0x00},
		// A final fixed block whose first symbol is a match (length code 257,
		// distance code 0) with nothing before it.
		"distance too far": {0x03, 0x02, 0x00, 0x00},
		"truncated":        {0x4b, 0x4c},
	} {
		_, err := io.ReadAll(NewReader(bufio.NewReader(bytes.NewReader(in))))
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// FuzzInflate: any input gives data or an error, never a panic; a stream
// the standard library accepts decodes to the same octets.
func FuzzInflate(f *testing.F) {
	for _, s := range []string{"", "hello", "a1 NOOP\r\na2 NOOP\r\n"} {
		var buf bytes.Buffer
		w, _ := flate.NewWriter(&buf, flate.DefaultCompression)
		w.Write([]byte(s))
		w.Flush()
		w.Close()
		f.Add(buf.Bytes())
	}
	f.Add([]byte{0x07})
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := io.ReadAll(io.LimitReader(NewReader(bufio.NewReader(bytes.NewReader(in))), 1<<20))
		want, werr := io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(in)), 1<<20))
		if err == nil && werr == nil && !bytes.Equal(got, want) {
			t.Fatalf("decoded %q, the standard library %q", got, want)
		}
	})
}
