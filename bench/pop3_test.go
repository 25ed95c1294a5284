package main

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
)

// fakePOP3 answers one session on 127.0.0.1 with the given messages, each
// announced with octets[i] octets.
func fakePOP3(t *testing.T, msgs []string, octets []int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		r := bufio.NewReader(nc)
		fmt.Fprintf(nc, "+OK ready\r\n")
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			f := strings.Fields(l)
			switch f[0] {
			case "USER":
				fmt.Fprintf(nc, "+OK\r\n")
			case "PASS":
				fmt.Fprintf(nc, "+OK bench has %d messages (1 octets)\r\n", len(msgs))
			case "RETR":
				var n int
				fmt.Sscan(f[1], &n)
				var b strings.Builder
				fmt.Fprintf(&b, "+OK %d octets\r\n", octets[n-1])
				for _, line := range strings.SplitAfter(msgs[n-1], "\r\n") {
					if strings.HasPrefix(line, ".") {
						b.WriteString(".")
					}
					b.WriteString(line)
				}
				b.WriteString(".\r\n")
				nc.Write([]byte(b.String()))
			case "QUIT":
				fmt.Fprintf(nc, "+OK bye\r\n")
				return
			}
		}
	}()
	return ln.Addr().String()
}

func TestPopSession(t *testing.T) {
	msgs := []string{"A: b\r\n\r\n.dot\r\n", "C: d\r\n\r\nbody\r\n"}
	ok := []int{len(msgs[0]), len(msgs[1])}
	res, err := popSession(fakePOP3(t, msgs, ok), "bench", "pw", 2)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(len(msgs[0]) + len(msgs[1])); res.bytes != want {
		t.Errorf("received %d octets, want %d (unstuffed)", res.bytes, want)
	}
	if _, err := popSession(fakePOP3(t, msgs, []int{ok[0], ok[1] + 1}), "bench", "pw", 2); err == nil {
		t.Error("a message shorter than its +OK said was not noticed")
	}
	if _, err := popSession(fakePOP3(t, msgs, ok), "bench", "pw", 3); err == nil {
		t.Error("a maildrop with fewer messages than asked for was not noticed")
	}
}
