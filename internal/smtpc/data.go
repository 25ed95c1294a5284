package smtpc

import (
	"bufio"
	"bytes"
	"io"
)

// writeData sends the message after a 354: lines end in CRLF (a bare LF or CR
// becomes CRLF, so that nothing we send can be read as a different end of data
// by the next server: the SMTP smuggling class), a line starting with "." gets
// another (RFC 5321 section 4.5.2), and ".\r\n" ends it. A Return-Path: field
// at the very start is left out (RFC 5321 section 4.4: it is added at final
// delivery only).
func writeData(s *session, msg io.Reader) error {
	br := bufio.NewReaderSize(msg, 32*1024)
	w := s.bw
	first, inReturnPath := true, false
	var pendingCR bool
	atLineStart := true
	for {
		line, err := br.ReadSlice('\n')
		if pendingCR && len(line) > 0 && line[0] == '\n' {
			// The CR that ended the previous piece and this LF are one CRLF.
			w.WriteString("\r\n")
			pendingCR, atLineStart = false, true
			line = line[1:]
		}
		if len(line) > 0 {
			// One logical piece: the bytes up to and including an LF, or a
			// buffer-full without one.
			complete := line[len(line)-1] == '\n'
			body := line
			if complete {
				body = line[:len(line)-1]
				if len(body) > 0 && body[len(body)-1] == '\r' {
					body = body[:len(body)-1]
				}
			}
			if atLineStart {
				if first && hasPrefixFold(body, "Return-Path:") {
					inReturnPath = true
				} else if inReturnPath && (len(body) == 0 || (body[0] != ' ' && body[0] != '\t')) {
					inReturnPath = false
				}
				first = false
			}
			if !inReturnPath {
				if atLineStart && len(body) > 0 && body[0] == '.' {
					w.WriteByte('.')
				}
				writeNoBareCR(w, body, &pendingCR)
				if complete {
					w.WriteString("\r\n")
				}
			}
			atLineStart = complete
			if w.Buffered() > 16*1024 {
				if ferr := s.flush(); ferr != nil {
					return ferr
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil && err != bufio.ErrBufferFull {
			return err
		}
	}
	if pendingCR {
		w.WriteString("\r\n")
	}
	if !atLineStart {
		w.WriteString("\r\n")
	}
	w.WriteString(".\r\n")
	return s.flush()
}

// writeNoBareCR writes b with any CR not followed by LF turned into CRLF. A CR
// at the end of b is held back in pendingCR until the next piece shows what
// follows it.
func writeNoBareCR(w *bufio.Writer, b []byte, pendingCR *bool) {
	if *pendingCR {
		w.WriteString("\r\n")
		*pendingCR = false
	}
	for {
		i := bytes.IndexByte(b, '\r')
		if i < 0 {
			w.Write(b)
			return
		}
		w.Write(b[:i])
		if i == len(b)-1 {
			*pendingCR = true
			return
		}
		if b[i+1] == '\n' {
			w.WriteString("\r\n")
			b = b[i+2:]
			continue
		}
		w.WriteString("\r\n")
		b = b[i+1:]
	}
}

func hasPrefixFold(b []byte, p string) bool {
	return len(b) >= len(p) && bytes.EqualFold(b[:len(p)], []byte(p))
}
