package head

import (
	"encoding/binary"
	"errors"
)

// Samples of one profile row are stored encoded: a count, the stack trace ids
// sorted and delta-coded, then the values zig-zag coded, all varints. A row of
// a real profile takes 3–5 bytes a sample instead of 12.

// EncodeSamples encodes stacks (sorted ascending, unique) and their values.
func EncodeSamples(dst []byte, stacks []uint32, values []int64) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(stacks)))
	prev := uint32(0)
	for _, s := range stacks {
		dst = binary.AppendUvarint(dst, uint64(s-prev))
		prev = s
	}
	for _, v := range values {
		dst = binary.AppendVarint(dst, v)
	}
	return dst
}

var errCorruptSamples = errors.New("corrupt encoded samples")

// DecodeSamples calls fn for each (stack, value) of an encoded row.
func DecodeSamples(b []byte, fn func(stack uint32, value int64)) error {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return errCorruptSamples
	}
	b = b[k:]
	// Stacks and values are interleaved by position: decode stacks into a small
	// window so one pass over values suffices.
	var buf [256]uint32
	vals := b
	// Skip over the stacks to find where the values start.
	for i := uint64(0); i < n; i++ {
		_, k := binary.Uvarint(vals)
		if k <= 0 {
			return errCorruptSamples
		}
		vals = vals[k:]
	}
	prev := uint32(0)
	for done := uint64(0); done < n; {
		m := min(n-done, uint64(len(buf)))
		for i := uint64(0); i < m; i++ {
			d, k := binary.Uvarint(b)
			b = b[k:]
			prev += uint32(d)
			buf[i] = prev
		}
		for i := uint64(0); i < m; i++ {
			v, k := binary.Varint(vals)
			if k <= 0 {
				return errCorruptSamples
			}
			vals = vals[k:]
			fn(buf[i], v)
		}
		done += m
	}
	return nil
}
