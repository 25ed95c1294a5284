// Package inflate decodes a raw DEFLATE stream (RFC 1951) for protocols
// that compress a conversation: IMAP COMPRESS=DEFLATE (RFC 4978).
//
// What it does differently from compress/flate is when it hands data
// over. A client that flushes with zlib's Z_PARTIAL_FLUSH (mbsync,
// Thunderbird) ends each command's block and follows it with the start of
// an empty block whose last bits stay in the client's buffer until it has
// more to say. The standard library's reader keeps a finished block's data
// until a sync marker or more input arrives (golang/go#31514), and a
// decoder that reads ahead by a Huffman table's longest code waits for
// bits that will not come; either way the server waits for a command the
// client has sent. This reader returns what a block held as soon as the
// block ends, and never asks for a bit before it needs it: Huffman codes
// are decoded bit by bit (as zlib's puff does), so a read never blocks on
// data that is not part of a code already begun.
//
// The price is speed (tens of MB/s, not hundreds), which the commands of
// a mail client do not notice.
package inflate

import (
	"errors"
	"io"
)

// Errors in the compressed stream.
var (
	ErrCorrupt = errors.New("inflate: corrupt DEFLATE stream")
)

const (
	windowSize  = 1 << 15
	maxLitCodes = 288
	maxDstCodes = 30
	maxBits     = 15
)

// huffman is a canonical Huffman code: how many codes of each length and
// the symbols in code order (RFC 1951 section 3.2.2).
type huffman struct {
	count  [maxBits + 1]uint16
	symbol []uint16
}

// build makes the code from the code lengths of the symbols. An
// over-subscribed set of lengths is an error; an incomplete one is
// allowed (RFC 1951 lets a distance code have one symbol).
func (h *huffman) build(lengths []uint8) error {
	h.count = [maxBits + 1]uint16{}
	for _, l := range lengths {
		h.count[l]++
	}
	if int(h.count[0]) == len(lengths) {
		h.symbol = h.symbol[:0]
		return nil // no codes: any use of it is an error
	}
	left := 1
	for l := 1; l <= maxBits; l++ {
		left <<= 1
		left -= int(h.count[l])
		if left < 0 {
			return ErrCorrupt
		}
	}
	var offs [maxBits + 2]uint16
	for l := 1; l <= maxBits; l++ {
		offs[l+1] = offs[l] + h.count[l]
	}
	if cap(h.symbol) < len(lengths) {
		h.symbol = make([]uint16, len(lengths))
	}
	h.symbol = h.symbol[:len(lengths)]
	for sym, l := range lengths {
		if l != 0 {
			h.symbol[offs[l]] = uint16(sym)
			offs[l]++
		}
	}
	return nil
}

// Reader decodes a raw DEFLATE stream read from R.
type Reader struct {
	r     io.ByteReader
	bits  uint32
	nbits uint
	err   error

	window [windowSize]byte
	wpos   int  // next write position in window
	filled bool // the window has wrapped: distances up to windowSize are valid

	pending []byte // decoded, not yet returned

	inBlock  bool
	final    bool
	stored   int // octets left in a stored block; -1 in a Huffman block
	lit, dst *huffman
	fixedLit huffman
	fixedDst huffman
	dynLit   huffman
	dynDst   huffman
}

// NewReader returns a Reader over r. r should be buffered; each byte is
// read when its first bit is needed.
func NewReader(r io.ByteReader) *Reader {
	z := &Reader{r: r}
	var l [maxLitCodes]uint8
	for i := range l {
		switch {
		case i < 144:
			l[i] = 8
		case i < 256:
			l[i] = 9
		case i < 280:
			l[i] = 7
		default:
			l[i] = 8
		}
	}
	z.fixedLit.build(l[:])
	var d [maxDstCodes]uint8
	for i := range d {
		d[i] = 5
	}
	z.fixedDst.build(d[:])
	return z
}

// need makes sure n bits are in z.bits, reading bytes as required.
func (z *Reader) need(n uint) error {
	for z.nbits < n {
		b, err := z.r.ReadByte()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		z.bits |= uint32(b) << z.nbits
		z.nbits += 8
	}
	return nil
}

func (z *Reader) getBits(n uint) (uint32, error) {
	if err := z.need(n); err != nil {
		return 0, err
	}
	v := z.bits & (1<<n - 1)
	z.bits >>= n
	z.nbits -= n
	return v, nil
}

// decode reads one symbol, one bit at a time (RFC 1951 codes are packed
// starting with their most significant bit).
func (z *Reader) decode(h *huffman) (int, error) {
	code, first, index := 0, 0, 0
	for l := 1; l <= maxBits; l++ {
		b, err := z.getBits(1)
		if err != nil {
			return 0, err
		}
		code |= int(b)
		count := int(h.count[l])
		if code-first < count {
			return int(h.symbol[index+code-first]), nil
		}
		index += count
		first += count
		first <<= 1
		code <<= 1
	}
	return 0, ErrCorrupt
}

// Length and distance bases and extra bits (RFC 1951 section 3.2.5).
var (
	lenBase  = [29]uint16{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	lenExtra = [29]uint8{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	dstBase  = [30]uint16{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	dstExtra = [30]uint8{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
	// The order of the code length code lengths (RFC 1951 section 3.2.7).
	clOrder = [19]uint8{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}
)

func (z *Reader) emit(b byte) {
	z.window[z.wpos] = b
	z.wpos++
	if z.wpos == windowSize {
		z.wpos, z.filled = 0, true
	}
	z.pending = append(z.pending, b)
}

// Read returns decoded data. It returns as soon as it has some and the
// block it came from has ended, or it has len(p) octets; it reads no
// input it does not need for that.
func (z *Reader) Read(p []byte) (int, error) {
	for len(z.pending) == 0 {
		if z.err != nil {
			return 0, z.err
		}
		z.err = z.step(len(p))
		if z.err != nil && len(z.pending) == 0 {
			return 0, z.err
		}
	}
	n := copy(p, z.pending)
	z.pending = z.pending[:copy(z.pending, z.pending[n:])]
	return n, nil
}

// step decodes until the current block ends or want octets are pending.
func (z *Reader) step(want int) error {
	for {
		if !z.inBlock {
			if z.final {
				return io.EOF
			}
			if err := z.header(); err != nil {
				return err
			}
			continue
		}
		if z.stored >= 0 {
			for z.stored > 0 {
				b, err := z.r.ReadByte()
				if err != nil {
					if err == io.EOF {
						err = io.ErrUnexpectedEOF
					}
					return err
				}
				z.emit(b)
				z.stored--
				if len(z.pending) >= want {
					return nil
				}
			}
			z.inBlock = false
			if len(z.pending) > 0 {
				return nil
			}
			continue
		}
		sym, err := z.decode(z.lit)
		if err != nil {
			return err
		}
		switch {
		case sym < 256:
			z.emit(byte(sym))
		case sym == 256:
			// End of block: what it held goes out now.
			z.inBlock = false
			if len(z.pending) > 0 {
				return nil
			}
			continue
		default:
			sym -= 257
			if sym >= 29 {
				return ErrCorrupt
			}
			e, err := z.getBits(uint(lenExtra[sym]))
			if err != nil {
				return err
			}
			length := int(lenBase[sym]) + int(e)
			ds, err := z.decode(z.dst)
			if err != nil {
				return err
			}
			if ds >= 30 {
				return ErrCorrupt
			}
			e, err = z.getBits(uint(dstExtra[ds]))
			if err != nil {
				return err
			}
			dist := int(dstBase[ds]) + int(e)
			if !z.filled && dist > z.wpos {
				return ErrCorrupt // before the start of the stream
			}
			for ; length > 0; length-- {
				z.emit(z.window[(z.wpos-dist+windowSize)%windowSize])
			}
		}
		if len(z.pending) >= want {
			return nil
		}
	}
}

// header reads a block header and, for a dynamic block, its codes.
func (z *Reader) header() error {
	h, err := z.getBits(3)
	if err != nil {
		return err
	}
	z.final = h&1 == 1
	switch h >> 1 {
	case 0:
		// Stored: the rest of the current byte is padding.
		z.bits >>= z.nbits % 8
		z.nbits -= z.nbits % 8
		v, err := z.getBits(16)
		if err != nil {
			return err
		}
		nv, err := z.getBits(16)
		if err != nil {
			return err
		}
		if v != ^nv&0xffff {
			return ErrCorrupt
		}
		// Whole bytes may sit in the bit buffer (at most one here).
		z.stored = int(v)
		for z.nbits >= 8 && z.stored > 0 {
			z.emit(byte(z.bits))
			z.bits >>= 8
			z.nbits -= 8
			z.stored--
		}
	case 1:
		z.lit, z.dst, z.stored = &z.fixedLit, &z.fixedDst, -1
	case 2:
		if err := z.dynamic(); err != nil {
			return err
		}
		z.lit, z.dst, z.stored = &z.dynLit, &z.dynDst, -1
	default:
		return ErrCorrupt
	}
	z.inBlock = true
	return nil
}

// dynamic reads the code lengths of a dynamic block (RFC 1951 section
// 3.2.7).
func (z *Reader) dynamic() error {
	v, err := z.getBits(14)
	if err != nil {
		return err
	}
	nlen, ndst, ncode := int(v&31)+257, int(v>>5&31)+1, int(v>>10)+4
	if nlen > 286 || ndst > 30 {
		return ErrCorrupt
	}
	var cl [19]uint8
	for i := 0; i < ncode; i++ {
		b, err := z.getBits(3)
		if err != nil {
			return err
		}
		cl[clOrder[i]] = uint8(b)
	}
	var clh huffman
	if err := clh.build(cl[:]); err != nil {
		return err
	}
	var lengths [maxLitCodes + maxDstCodes]uint8
	for i := 0; i < nlen+ndst; {
		sym, err := z.decode(&clh)
		if err != nil {
			return err
		}
		if sym < 16 {
			lengths[i] = uint8(sym)
			i++
			continue
		}
		var rep int
		var val uint8
		switch sym {
		case 16:
			if i == 0 {
				return ErrCorrupt
			}
			val = lengths[i-1]
			b, err := z.getBits(2)
			if err != nil {
				return err
			}
			rep = 3 + int(b)
		case 17:
			b, err := z.getBits(3)
			if err != nil {
				return err
			}
			rep = 3 + int(b)
		default:
			b, err := z.getBits(7)
			if err != nil {
				return err
			}
			rep = 11 + int(b)
		}
		if i+rep > nlen+ndst {
			return ErrCorrupt
		}
		for ; rep > 0; rep-- {
			lengths[i] = val
			i++
		}
	}
	if lengths[256] == 0 {
		return ErrCorrupt // no end-of-block code
	}
	if err := z.dynLit.build(lengths[:nlen]); err != nil {
		return err
	}
	return z.dynDst.build(lengths[nlen : nlen+ndst])
}
