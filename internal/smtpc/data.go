package smtpc

import (
	"bufio"
	"bytes"
	"io"
	"sync"
)

// writeData sends the message after a 354: every line ends in CRLF (a bare LF
// or a bare CR becomes CRLF), a line starting with "." gets another (RFC 5321
// section 4.5.2) — including a line that starts after a bare CR, or the next
// server would read "\r.\r\n" as the end of the data and the rest as commands
// (SMTP smuggling) — and ".\r\n" ends it. A Return-Path: field at the very
// start is left out (RFC 5321 section 4.4: it is added at final delivery only).
func writeData(s *session, msg io.Reader) error {
	br := bufio.NewReaderSize(msg, 4096)
	if err := skipReturnPath(br); err != nil {
		return err
	}
	w := s.bw
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	atLineStart, prevCR := true, false
	for {
		n, err := br.Read(buf)
		p := buf[:n]
		for len(p) > 0 {
			if prevCR {
				// The CR ended a line, with or without its LF.
				prevCR = false
				w.WriteString("\r\n")
				atLineStart = true
				if p[0] == '\n' {
					p = p[1:]
					continue
				}
			}
			if atLineStart && p[0] == '.' {
				w.WriteByte('.')
			}
			i := bytes.IndexAny(p, "\r\n")
			if i < 0 {
				w.Write(p)
				atLineStart = false
				break
			}
			w.Write(p[:i])
			if i > 0 {
				atLineStart = false
			}
			if p[i] == '\r' {
				prevCR = true
			} else {
				w.WriteString("\r\n")
				atLineStart = true
			}
			p = p[i+1:]
		}
		if w.Buffered() > 16*1024 {
			if ferr := s.flush(); ferr != nil {
				return ferr
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if prevCR {
		w.WriteString("\r\n")
		atLineStart = true
	}
	if !atLineStart {
		w.WriteString("\r\n")
	}
	w.WriteString(".\r\n")
	return s.flush()
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32*1024); return &b }}

// skipReturnPath drops a Return-Path: field, with its continuation lines, at
// the start of the message.
func skipReturnPath(br *bufio.Reader) error {
	const name = "Return-Path:"
	head, _ := br.Peek(len(name))
	if len(head) < len(name) || !bytes.EqualFold(head, []byte(name)) {
		return nil
	}
	for first := true; ; first = false {
		if !first {
			c, err := br.Peek(1)
			if err != nil || (c[0] != ' ' && c[0] != '\t') {
				return nil
			}
		}
		if err := discardLine(br); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}

// discardLine reads up to and including the next LF, however long the line.
func discardLine(br *bufio.Reader) error {
	for {
		_, err := br.ReadSlice('\n')
		if err != bufio.ErrBufferFull {
			return err
		}
	}
}
