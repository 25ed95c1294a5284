package pop3d

import (
	"bufio"
	"errors"
	"io"
)

// writeMessage sends a message as the body of a multi-line response (RFC
// 1939 section 3): each line that starts with "." gets another "." in front
// (byte-stuffing), and the termination octet "." on a line of its own follows.
//
// Stored messages have CRLF line ends (the SMTP server takes nothing else);
// a bare LF that an import may have left is sent as CRLF all the same, so
// that every client finds the end, and a last line without a line end gets
// one. A "." is stuffed after any LF, so no line of a message can be taken
// for the termination.
//
// With bodyLines >= 0 (TOP, RFC 1939 section 7) only the header, the empty
// line after it and that many lines of the body are sent.
func writeMessage(w *bufio.Writer, r *bufio.Reader, bodyLines int) error {
	var (
		lineStart = true  // the next octet starts a line
		lastCR    = false // the last octet sent was CR
		lineLen   = 0     // octets of the current line sent so far
		inHeader  = true
		lines     = 0 // body lines sent
	)
	for {
		if !inHeader && bodyLines >= 0 && lines >= bodyLines {
			break
		}
		piece, err := r.ReadSlice('\n')
		if len(piece) > 0 {
			if lineStart && piece[0] == '.' {
				w.WriteByte('.')
			}
			if piece[len(piece)-1] == '\n' {
				content := piece[:len(piece)-1]
				crlf := len(content) > 0 && content[len(content)-1] == '\r' || len(content) == 0 && lastCR
				if crlf {
					w.Write(piece)
				} else {
					w.Write(content)
					w.WriteString("\r\n")
				}
				n := lineLen + len(content)
				if crlf {
					n-- // the CR is part of the line end
				}
				if inHeader {
					if n == 0 {
						inHeader = false // the empty line that ends the header (RFC 5322 section 2.1)
					}
				} else {
					lines++
				}
				lineStart, lastCR, lineLen = true, false, 0
			} else {
				w.Write(piece)
				lineStart, lastCR = false, piece[len(piece)-1] == '\r'
				lineLen += len(piece)
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			if !errors.Is(err, bufio.ErrBufferFull) {
				return err
			}
		}
	}
	if !lineStart {
		if lastCR {
			w.WriteByte('\n')
		} else {
			w.WriteString("\r\n")
		}
	}
	_, err := w.WriteString(".\r\n")
	return err
}
