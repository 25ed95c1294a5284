package antispam

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/policy"
)

// tcpPair returns both ends of a TCP connection over 127.0.0.1.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

func TestEarlyTalker(t *testing.T) {
	const wait = 150 * time.Millisecond
	tests := []struct {
		name   string
		wait   time.Duration
		client func(c net.Conn) // what the client does right after connecting
		talked bool
		data   string
		err    error
	}{
		{"waits for the greeting", wait, func(net.Conn) {}, false, "", nil},
		{"talks at once", wait, func(c net.Conn) { c.Write([]byte("EHLO spam.example\r\n")) }, true, "EHLO spam.example\r\n", nil},
		{"talks just before the greeting", wait, func(c net.Conn) {
			time.Sleep(wait / 3)
			c.Write([]byte("HELO x\r\n"))
		}, true, "HELO x\r\n", nil},
		{"talks and leaves", wait, func(c net.Conn) {
			c.Write([]byte("QUIT\r\n"))
			c.Close()
		}, true, "QUIT\r\n", nil},
		{"leaves silently", wait, func(c net.Conn) { c.Close() }, false, "", io.EOF},
		{"off: not even looked at", 0, func(c net.Conn) { c.Write([]byte("EHLO early.example\r\n")) }, false, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, cl := tcpPair(t)
			go tt.client(cl)
			start := time.Now()
			e, err := EarlyTalker(srv, tt.wait)
			el := time.Since(start)
			if e.Talked != tt.talked || string(e.Data) != tt.data || !errors.Is(err, tt.err) {
				t.Fatalf("EarlyTalker = %+v (%q), %v; want talked %v, %q, %v", e, e.Data, err, tt.talked, tt.data, tt.err)
			}
			if !tt.talked && tt.err == nil && tt.wait > 0 && el < tt.wait {
				t.Errorf("returned after %v, before the wait of %v", el, tt.wait)
			}
			if el > tt.wait+2*time.Second {
				t.Errorf("took %v for a wait of %v", el, tt.wait)
			}
			if tt.wait == 0 {
				// Off: nothing was read, so the session still gets it all.
				srv.SetReadDeadline(time.Now().Add(2 * time.Second))
				if line, err := bufio.NewReader(srv).ReadString('\n'); line != "EHLO early.example\r\n" {
					t.Errorf("after EarlyTalker(0) the server read %q, %v", line, err)
				}
			}
			d := e.Decision(netip.MustParseAddr("192.0.2.1"))
			if tt.talked {
				if d.Verdict != policy.Reject || d.Code != 554 || !strings.Contains(d.Reason, "192.0.2.1") {
					t.Errorf("decision %+v, want a 554 refusal", d)
				}
			} else if d.Verdict != policy.Accept {
				t.Errorf("decision %+v, want accept", d)
			}
		})
	}
}

// After a client that waited, the connection goes on as usual: the read
// deadline is gone, and what the client says after the greeting arrives.
func TestEarlyTalkerThenSession(t *testing.T) {
	srv, cl := tcpPair(t)
	e, err := EarlyTalker(srv, 50*time.Millisecond)
	if err != nil || e.Talked {
		t.Fatalf("EarlyTalker = %+v, %v", e, err)
	}
	if _, err := srv.Write([]byte("220 mx.posthorn.test ESMTP\r\n")); err != nil {
		t.Fatal(err)
	}
	clr := bufio.NewReader(cl)
	if line, err := clr.ReadString('\n'); err != nil || line != "220 mx.posthorn.test ESMTP\r\n" {
		t.Fatalf("client read %q, %v", line, err)
	}
	// Well past the early-talker wait: a deadline left behind would fail
	// this read.
	time.Sleep(150 * time.Millisecond)
	cl.Write([]byte("EHLO ok.example\r\n"))
	line, err := bufio.NewReader(srv).ReadString('\n')
	if err != nil || line != "EHLO ok.example\r\n" {
		t.Fatalf("server read %q, %v", line, err)
	}
}

// A client that sends more than the buffer: Data holds a bounded part, and
// the rest is still there to read.
func TestEarlyTalkerBounded(t *testing.T) {
	srv, cl := tcpPair(t)
	big := strings.Repeat("x", 4*earlyMax)
	go cl.Write([]byte(big))
	time.Sleep(50 * time.Millisecond)
	e, err := EarlyTalker(srv, time.Second)
	if err != nil || !e.Talked || len(e.Data) == 0 || len(e.Data) > earlyMax {
		t.Fatalf("EarlyTalker = talked %v, %d bytes, %v", e.Talked, len(e.Data), err)
	}
	srv.SetReadDeadline(time.Now().Add(2 * time.Second))
	rest := make([]byte, len(big)-len(e.Data))
	if _, err := io.ReadFull(srv, rest); err != nil {
		t.Fatalf("reading the rest: %v", err)
	}
	if string(e.Data)+string(rest) != big {
		t.Error("bytes lost or changed")
	}
}
