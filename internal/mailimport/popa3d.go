package mailimport

// The unique-ids popa3d (Openwall's POP3 server, the one the guide installs)
// gives the messages of an mbox, worked out from its mailbox.c so that
// fetchmail and Thunderbird, which remember what they fetched by UIDL (RFC
// 1939 section 7), do not fetch everything again after the move.
//
// popa3d hashes with MD5 the header lines that stay the same while the
// message sits in the mbox (a mail reader rewriting Status: must not change
// the id): every Delivered-To: line; the first Received: line; Date: and
// Message-ID: only when they come before any Received: line; X-Delivery-ID:
// (written exactly so: popa3d's test of the first letter is upper-case X
// only). Continuation lines of a hashed field are hashed too; the names are
// matched case-insensitively; each line is hashed with its LF. The id is 16
// hex digits: bytes 3,2,1,0,7,6,5,4 of the digest.

import (
	"crypto/md5"
	"encoding/hex"
	"hash"
)

type popa3dHash struct {
	h        hash.Hash
	fixed    bool
	received bool
}

func newPopa3dHash() *popa3dHash { return &popa3dHash{h: md5.New()} }

// hasPrefixFold is popa3d's eq(): line starts with p, ignoring case.
func hasPrefixFold(line []byte, p string) bool {
	if len(line) < len(p) {
		return false
	}
	for i := 0; i < len(p); i++ {
		a, b := line[i], p[i]
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}

// headerLine takes one line of the header (with its LF), the "From " line
// excluded; the empty line that ends the header is passed too and ignored.
func (p *popa3dHash) headerLine(line []byte) {
	if len(line) == 0 || line[0] == '\n' {
		return
	}
	switch line[0] {
	case ' ', '\t':
		// A continuation keeps the state of its field.
	case 'R', 'r':
		if !p.received && hasPrefixFold(line, "Received:") {
			p.received, p.fixed = true, true
		} else {
			p.fixed = false
		}
	case 'D', 'd':
		p.fixed = hasPrefixFold(line, "Delivered-To:") || (!p.received && hasPrefixFold(line, "Date:"))
	case 'M', 'm':
		p.fixed = !p.received && hasPrefixFold(line, "Message-ID:")
	case 'X':
		p.fixed = hasPrefixFold(line, "X-Delivery-ID:")
	default:
		p.fixed = false
	}
	if p.fixed {
		p.h.Write(line)
	}
}

func (p *popa3dHash) uidl() string {
	d := p.h.Sum(nil)
	return hex.EncodeToString([]byte{d[3], d[2], d[1], d[0], d[7], d[6], d[5], d[4]})
}
