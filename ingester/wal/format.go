package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Record framing (version 1). All integers are little endian.
//
//	offset size field
//	0      4    payload length (bytes)
//	4      1    format version (1)
//	5      1    flags (0; readers reject unknown flags)
//	6      2    reserved (0)
//	8      4    CRC32C (Castagnoli) of the payload
//	12     4    CRC32C of header bytes [0,12)
//	16     n    payload
const (
	headerSize    = 16
	formatVersion = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// putHeader writes the header for payload into h (len(h) >= headerSize).
func putHeader(h []byte, payload []byte) {
	binary.LittleEndian.PutUint32(h[0:4], uint32(len(payload)))
	h[4] = formatVersion
	h[5] = 0
	h[6], h[7] = 0, 0
	binary.LittleEndian.PutUint32(h[8:12], crc32.Checksum(payload, castagnoli))
	binary.LittleEndian.PutUint32(h[12:16], crc32.Checksum(h[0:12], castagnoli))
}

// appendRecord appends the framed record for payload to dst.
func appendRecord(dst, payload []byte) []byte {
	var h [headerSize]byte
	putHeader(h[:], payload)
	dst = append(dst, h[:]...)
	return append(dst, payload...)
}

// header is a decoded, self-consistent record header.
type header struct {
	length     uint32
	payloadCRC uint32
}

// parseHeader validates h (exactly headerSize bytes) on its own: header CRC,
// version, flags and reserved bytes. It does not know whether the payload fits.
func parseHeader(h []byte) (header, bool) {
	if h[4] != formatVersion || h[5] != 0 || h[6] != 0 || h[7] != 0 {
		return header{}, false
	}
	if crc32.Checksum(h[0:12], castagnoli) != binary.LittleEndian.Uint32(h[12:16]) {
		return header{}, false
	}
	return header{
		length:     binary.LittleEndian.Uint32(h[0:4]),
		payloadCRC: binary.LittleEndian.Uint32(h[8:12]),
	}, true
}

// otherVersion returns the version of a header that is intact (its CRC
// matches) but of a version this release does not write: a record of a newer
// (or much older) release, which must be refused, never taken for damage and
// truncated. 0 when h is not such a header. The version byte at offset 4 and
// the header CRC at offset 12 stay where they are in every version
// (docs/upgrading.md), so that this check keeps working.
func otherVersion(h []byte) int {
	if h[4] == formatVersion || h[4] == 0 {
		return 0
	}
	if crc32.Checksum(h[0:12], castagnoli) != binary.LittleEndian.Uint32(h[12:16]) {
		return 0
	}
	return int(h[4])
}

// versionError is a segment holding a record of a version this release does
// not read, at offset off.
type versionError struct {
	version int
	off     int64
}

func (e *versionError) Error() string {
	return fmt.Sprintf("record at offset %d has format version %d", e.off, e.version)
}

// badKind says why decoding stopped before the end of a segment.
type badKind int

const (
	badNone         badKind = iota
	badShortHeader          // fewer than headerSize bytes left
	badHeader               // header CRC / version / flags wrong
	badShortPayload         // valid header, payload runs past end of file
	badPayloadCRC           // valid header, payload CRC mismatch
)

func (k badKind) String() string {
	switch k {
	case badNone:
		return "none"
	case badShortHeader:
		return "short header"
	case badHeader:
		return "bad header"
	case badShortPayload:
		return "short payload"
	case badPayloadCRC:
		return "bad payload crc"
	}
	return fmt.Sprintf("badKind(%d)", int(k))
}

// scanResult describes what scanning one segment found.
type scanResult struct {
	records int64
	// good is the offset just past the last good record before the first
	// bad one (or the end of the segment if every record is good).
	good int64
	bad  badKind
	// torn is true when the bad region at good is a torn tail: no valid
	// record exists anywhere after it. Only meaningful when bad != badNone.
	torn bool
}

// errStop is returned by scan callbacks to stop early (not an I/O error).
var errStop = errors.New("wal: stop")

// segmentReader is a simple buffered sequential reader over an io.ReaderAt
// that keeps track of the absolute offset.
type segmentReader struct {
	r    io.ReaderAt
	size int64
	buf  []byte
	bufS int64 // absolute offset of buf[0]
	n    int   // valid bytes in buf
}

// window returns size bytes at absolute offset off (off+size <= r.size),
// valid until the next call. Large payloads get their own allocation.
func (sr *segmentReader) window(off int64, size int) ([]byte, error) {
	if off >= sr.bufS && off+int64(size) <= sr.bufS+int64(sr.n) {
		s := int(off - sr.bufS)
		return sr.buf[s : s+size], nil
	}
	if size > len(sr.buf) {
		if size > 4*len(sr.buf) || len(sr.buf) == 0 {
			// Oversized record: read it directly.
			b := make([]byte, size)
			if n, err := sr.r.ReadAt(b, off); n < size {
				if err == nil || errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF
				}
				return nil, err
			}
			return b, nil
		}
		sr.buf = make([]byte, 4*len(sr.buf))
	}
	want := len(sr.buf)
	if rem := sr.size - off; int64(want) > rem {
		want = int(rem)
	}
	n, err := sr.r.ReadAt(sr.buf[:want], off)
	if n < want {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	sr.bufS, sr.n = off, n
	return sr.buf[off-sr.bufS : off-sr.bufS+int64(size)], nil
}

// scanSegment decodes records from r (size bytes) in order, calling fn for
// each good record with its offset and payload (valid only during the call).
// On the first bad record it stops and classifies the damage: torn is set
// when no valid record exists after the damage (a crash mid-write or a
// zero-filled tail), otherwise the damage is corruption in the middle.
// The returned error is an I/O error or an error from fn.
func scanSegment(r io.ReaderAt, size int64, bufSize int, fn func(off int64, payload []byte) error) (scanResult, error) {
	if bufSize <= 0 {
		bufSize = 1 << 20
	}
	if int64(bufSize) > size {
		bufSize = int(max(size, headerSize))
	}
	sr := &segmentReader{r: r, size: size, buf: make([]byte, bufSize)}
	var res scanResult
	off := int64(0)
	for off < size {
		if size-off < headerSize {
			res.bad = badShortHeader
			break
		}
		hb, err := sr.window(off, headerSize)
		if err != nil {
			return res, err
		}
		h, ok := parseHeader(hb)
		if !ok {
			if v := otherVersion(hb); v != 0 {
				return res, &versionError{version: v, off: off}
			}
			res.bad = badHeader
			break
		}
		if int64(h.length) > size-off-headerSize {
			res.bad = badShortPayload
			break
		}
		p, err := sr.window(off+headerSize, int(h.length))
		if err != nil {
			return res, err
		}
		if crc32.Checksum(p, castagnoli) != h.payloadCRC {
			res.bad = badPayloadCRC
			break
		}
		if fn != nil {
			if err := fn(off, p); err != nil {
				return res, err
			}
		}
		res.records++
		off += headerSize + int64(h.length)
		res.good = off
	}
	res.good = off
	if res.bad == badNone {
		return res, nil
	}
	torn, err := noValidRecordAfter(r, size, off)
	if err != nil {
		return res, err
	}
	if torn {
		// Damage followed by a record of another version is not a torn
		// tail to truncate: refuse the segment instead.
		if v, at, err := otherVersionAfter(r, size, off); err != nil {
			return res, err
		} else if v != 0 {
			return res, &versionError{version: v, off: at}
		}
	}
	res.torn = torn
	return res, nil
}

// noValidRecordAfter reports whether no complete valid record starts at any
// offset in (from, size). It is only called after damage was found, so its
// cost (a byte-by-byte search with a cheap pre-filter) is paid rarely.
func noValidRecordAfter(r io.ReaderAt, size, from int64) (bool, error) {
	chunk := int64(1 << 20)
	if rem := size - from; rem < chunk {
		chunk = max(rem, 1)
	}
	buf := make([]byte, chunk+headerSize)
	for start := from + 1; start+headerSize <= size; start += chunk {
		n := int64(len(buf))
		if rem := size - start; n > rem {
			n = rem
		}
		b := buf[:n]
		if _, err := r.ReadAt(b, start); err != nil && !errors.Is(err, io.EOF) {
			return false, err
		}
		last := chunk
		if n-headerSize+1 < last {
			last = n - headerSize + 1
		}
		for i := int64(0); i < last; i++ {
			hb := b[i : i+headerSize]
			// Cheap filter before the CRC: version, flags, reserved.
			if hb[4] != formatVersion || hb[5]|hb[6]|hb[7] != 0 {
				continue
			}
			h, ok := parseHeader(hb)
			if !ok {
				continue
			}
			off := start + i
			if int64(h.length) > size-off-headerSize {
				continue
			}
			p := make([]byte, h.length)
			if _, err := r.ReadAt(p, off+headerSize); err != nil && !errors.Is(err, io.EOF) {
				return false, err
			}
			if crc32.Checksum(p, castagnoli) == h.payloadCRC {
				return false, nil
			}
		}
	}
	return true, nil
}

// otherVersionAfter finds the first intact header of another version
// (otherVersion) at an offset in (from, size); v is 0 when there is none.
// Like noValidRecordAfter it runs only after damage was found.
func otherVersionAfter(r io.ReaderAt, size, from int64) (v int, at int64, err error) {
	const chunk = 1 << 20
	buf := make([]byte, chunk+headerSize)
	for start := from + 1; start+headerSize <= size; start += chunk {
		n := min(int64(len(buf)), size-start)
		b := buf[:n]
		if _, err := r.ReadAt(b, start); err != nil && !errors.Is(err, io.EOF) {
			return 0, 0, err
		}
		for i := int64(0); i+headerSize <= n && i < chunk; i++ {
			if v := otherVersion(b[i : i+headerSize]); v != 0 {
				return v, start + i, nil
			}
		}
	}
	return 0, 0, nil
}
