// Package varint reads varint-framed binary data with bounds checks: every
// read names what it reads, the first error sticks, and a corrupt or
// truncated input yields an error wrapping Base, never a panic or a huge
// allocation. The block files, the replica wire format and the WAL records
// all decode through it.
package varint

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Decoder reads from B; Err is the first error, wrapping Base.
type Decoder struct {
	B    []byte
	Err  error
	Base error // the sentinel every error wraps (e.g. a package's ErrCorrupt)
}

// Failf records an error unless one is already recorded.
func (d *Decoder) Failf(format string, args ...any) {
	if d.Err == nil {
		d.Err = fmt.Errorf("%w: %s", d.Base, fmt.Sprintf(format, args...))
	}
}

// Fail records that what is truncated or bad.
func (d *Decoder) Fail(what string) { d.Failf("truncated or bad %s", what) }

// Uvarint reads an unsigned varint.
func (d *Decoder) Uvarint(what string) uint64 {
	if d.Err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.B)
	if n <= 0 {
		d.Fail(what)
		return 0
	}
	d.B = d.B[n:]
	return v
}

// Varint reads a zig-zag varint.
func (d *Decoder) Varint(what string) int64 {
	if d.Err != nil {
		return 0
	}
	v, n := binary.Varint(d.B)
	if n <= 0 {
		d.Fail(what)
		return 0
	}
	d.B = d.B[n:]
	return v
}

// U32 reads a uvarint that must be below limit.
func (d *Decoder) U32(what string, limit uint64) uint32 {
	v := d.Uvarint(what)
	if d.Err == nil && (v >= limit || v > math.MaxUint32) {
		d.Failf("%s %d out of range (limit %d)", what, v, limit)
		return 0
	}
	return uint32(v)
}

// Count reads an element count; every element takes at least minBytes of
// what is left, which bounds what a caller allocates for it.
func (d *Decoder) Count(what string, minBytes int) int {
	v := d.Uvarint(what)
	if d.Err == nil && v > uint64(len(d.B)/max(1, minBytes)) {
		d.Failf("%s %d exceeds what %d bytes can hold", what, v, len(d.B))
		return 0
	}
	return int(v)
}

// Bytes reads n bytes; the result aliases B with its capacity capped.
func (d *Decoder) Bytes(n int, what string) []byte {
	if d.Err != nil {
		return nil
	}
	if n < 0 || n > len(d.B) {
		d.Fail(what)
		return nil
	}
	out := d.B[:n:n]
	d.B = d.B[n:]
	return out
}

// Len reads a uvarint length that must fit in what is left.
func (d *Decoder) Len(what string) int {
	n := d.Uvarint(what)
	if d.Err == nil && n > uint64(len(d.B)) {
		d.Fail(what)
		return 0
	}
	return int(n)
}

// Str reads a uvarint length and that many bytes as a string.
func (d *Decoder) Str(what string) string { return string(d.Bytes(d.Len(what), what)) }

// Done fails on trailing bytes and returns the first error.
func (d *Decoder) Done(what string) error {
	if d.Err == nil && len(d.B) != 0 {
		d.Failf("%s: %d trailing bytes", what, len(d.B))
	}
	return d.Err
}
