package head

import (
	"cmp"
	"encoding/binary"
	"errors"
	"math/bits"
	"slices"
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

// Span samples. A row whose samples carried a span_id pprof label keeps, after
// its values, a trailer that DecodeSamples never reads: the same samples split
// by span. It is a version byte (1), the number of spans, then per span (in
// ascending span id) the id as 8 bytes little endian, the number of its
// samples, their stack ids delta-coded and their values zig-zag coded. The
// row's stacks and values stay the totals over every sample, span or not, so
// every reader that does not ask for spans sees the same row as before. Code
// that renumbers a row's stacks must use RemapSamples, which keeps the trailer
// (EncodeSamples of the decoded stacks and values drops it).

// SpanSample is one (span, stack, value) of a row.
type SpanSample struct {
	Span  uint64
	Stack uint32
	Value int64
}

const spanTrailerVersion = 1

// AppendSpans appends the span trailer of samples (sorted by span, then
// stack) to an encoded row. No samples: nothing is appended.
func AppendSpans(dst []byte, samples []SpanSample) []byte {
	if len(samples) == 0 {
		return dst
	}
	dst = append(dst, spanTrailerVersion)
	spans := 0
	for i := range samples {
		if i == 0 || samples[i].Span != samples[i-1].Span {
			spans++
		}
	}
	dst = binary.AppendUvarint(dst, uint64(spans))
	for i := 0; i < len(samples); {
		j := i
		for j < len(samples) && samples[j].Span == samples[i].Span {
			j++
		}
		dst = binary.LittleEndian.AppendUint64(dst, samples[i].Span)
		dst = binary.AppendUvarint(dst, uint64(j-i))
		prev := uint32(0)
		for _, s := range samples[i:j] {
			dst = binary.AppendUvarint(dst, uint64(s.Stack-prev))
			prev = s.Stack
		}
		for _, s := range samples[i:j] {
			dst = binary.AppendVarint(dst, s.Value)
		}
		i = j
	}
	return dst
}

// spanTrailer returns the bytes after an encoded row's values.
func spanTrailer(b []byte) ([]byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return nil, errCorruptSamples
	}
	b = b[k:]
	for i := uint64(0); i < 2*n; i++ { // stacks, then values
		_, k := binary.Uvarint(b)
		if k <= 0 {
			return nil, errCorruptSamples
		}
		b = b[k:]
	}
	return b, nil
}

// HasSpans reports whether an encoded row carries span samples.
func HasSpans(b []byte) bool {
	t, err := spanTrailer(b)
	return err == nil && len(t) > 0
}

// DecodeSpans calls fn for each span sample of an encoded row; a row
// without a trailer has none.
func DecodeSpans(b []byte, fn func(span uint64, stack uint32, value int64)) error {
	t, err := spanTrailer(b)
	if err != nil || len(t) == 0 {
		return err
	}
	if t[0] != spanTrailerVersion {
		return errCorruptSamples
	}
	t = t[1:]
	spans, k := binary.Uvarint(t)
	if k <= 0 || spans > uint64(len(t)) {
		return errCorruptSamples
	}
	t = t[k:]
	for ; spans > 0; spans-- {
		if len(t) < 8 {
			return errCorruptSamples
		}
		span := binary.LittleEndian.Uint64(t)
		t = t[8:]
		n, k := binary.Uvarint(t)
		if k <= 0 || n > uint64(len(t)) {
			return errCorruptSamples
		}
		t = t[k:]
		vals := t
		for i := uint64(0); i < n; i++ {
			_, k := binary.Uvarint(vals)
			if k <= 0 {
				return errCorruptSamples
			}
			vals = vals[k:]
		}
		prev := uint32(0)
		for i := uint64(0); i < n; i++ {
			d, k := binary.Uvarint(t)
			t = t[k:]
			prev += uint32(d)
			v, k := binary.Varint(vals)
			if k <= 0 {
				return errCorruptSamples
			}
			vals = vals[k:]
			fn(span, prev, v)
		}
		t = vals
	}
	return nil
}

// uvarint decodes the unsigned varint at b[i:] and returns it with the index
// after it; a negative index when b holds no valid varint there. Eight bytes
// at a time when it can: a row's values are mostly multi-byte varints, and
// the byte-at-a-time loop mispredicts on their lengths.
func uvarint(b []byte, i int) (uint64, int) {
	if i >= 0 && i+8 <= len(b) {
		x := binary.LittleEndian.Uint64(b[i:])
		if m := ^x & 0x8080808080808080; m != 0 {
			end := bits.TrailingZeros64(m) + 1 // bits up to the last byte's (clear) top bit
			x &= 1<<end - 1
			return x&0x7f | x>>1&(0x7f<<7) | x>>2&(0x7f<<14) | x>>3&(0x7f<<21) |
				x>>4&(0x7f<<28) | x>>5&(0x7f<<35) | x>>6&(0x7f<<42) | x>>7&(0x7f<<49), i + end/8
		}
	}
	return uvarintSlow(b, i)
}

func uvarintSlow(b []byte, i int) (uint64, int) {
	if i < 0 || i > len(b) {
		return 0, -1
	}
	v, k := binary.Uvarint(b[i:])
	if k <= 0 {
		return 0, -1
	}
	return v, i + k
}

// SumSamples adds the values of an encoded row into sums, indexed by stack
// id, and sets each stack's bit in seen (a bitmap over the same ids). scratch
// is a buffer for the row's stack ids, returned for reuse. A stack id beyond
// sums is an error: the row does not belong to the symbols sums was sized for.
// It is DecodeSamples for merges: one pass over the stack ids, one over the
// values, no call per sample.
func SumSamples(b []byte, sums []int64, seen []uint64, scratch []uint32) ([]uint32, error) {
	n, i := uvarint(b, 0)
	if i < 0 || n > uint64(len(b)) {
		return scratch, errCorruptSamples
	}
	if uint64(cap(scratch)) < n {
		scratch = make([]uint32, n)
	}
	stacks := scratch[:n]
	prev := uint32(0)
	limit := uint32(len(sums))
	for j := range stacks {
		var d uint64
		if i < len(b) && b[i] < 0x80 {
			d = uint64(b[i])
			i++
		} else if d, i = uvarint(b, i); i < 0 {
			return scratch, errCorruptSamples
		}
		prev += uint32(d)
		if prev >= limit {
			return scratch, errStackRange
		}
		stacks[j] = prev
	}
	for _, st := range stacks {
		var u uint64
		if x, m := word(b, i); m != 0 { // uvarint's fast path, inlined
			end := bits.TrailingZeros64(m) + 1
			x &= 1<<end - 1
			u = x&0x7f | x>>1&(0x7f<<7) | x>>2&(0x7f<<14) | x>>3&(0x7f<<21) |
				x>>4&(0x7f<<28) | x>>5&(0x7f<<35) | x>>6&(0x7f<<42) | x>>7&(0x7f<<49)
			i += end / 8
		} else if u, i = uvarintSlow(b, i); i < 0 {
			return scratch, errCorruptSamples
		}
		sums[st] += int64(u>>1) ^ -int64(u&1) // zig-zag, as binary.Varint
		seen[st>>6] |= 1 << (st & 63)
	}
	return scratch, nil
}

// CheckSamples reports whether an encoded row decodes and refers only to
// stacks below nodes (what DecodeSamples would find), without decoding values.
func CheckSamples(b []byte, nodes uint32) error {
	n, i := uvarint(b, 0)
	if i < 0 || n > uint64(len(b)) {
		return errCorruptSamples
	}
	prev := uint32(0)
	for j := uint64(0); j < n; j++ {
		var d uint64
		if i < len(b) && b[i] < 0x80 {
			d = uint64(b[i])
			i++
		} else if d, i = uvarint(b, i); i < 0 {
			return errCorruptSamples
		}
		prev += uint32(d)
		if prev >= nodes {
			return errStackRange
		}
	}
	// Values: only their ends matter. Eight bytes at a time, every varint
	// that ends in them is skipped at once; a varint longer than eight bytes
	// goes through the exact decoder.
	for left := n; left > 0; {
		if _, m := word(b, i); m != 0 {
			ends := uint64(bits.OnesCount64(m))
			if ends >= left {
				return nil
			}
			left -= ends
			i += (64 - bits.LeadingZeros64(m)) / 8
			continue
		}
		if _, i = uvarintSlow(b, i); i < 0 {
			return errCorruptSamples
		}
		left--
	}
	return nil
}

// RemapSamples re-encodes a row with every stack id (its span samples'
// included) passed through f: what renumbering symbols needs. f need not keep
// the order (merged symbol tables do not): the stacks are sorted again, and
// stacks that f maps to one id are summed.
func RemapSamples(dst, b []byte, f func(uint32) uint32) ([]byte, error) {
	var r Remapper
	return r.Remap(dst, b, f)
}

// Remapper is RemapSamples with its scratch kept between rows: for a reader
// that renumbers row after row (a peer's answer). Not for concurrent use.
type Remapper struct {
	ps, spans []SpanSample // Span unused in ps: the row's own samples
	stacks    []uint32
	values    []int64
}

// Remap is RemapSamples.
func (r *Remapper) Remap(dst, b []byte, f func(uint32) uint32) ([]byte, error) {
	ps := r.ps[:0]
	if err := DecodeSamples(b, func(st uint32, v int64) {
		ps = append(ps, SpanSample{Stack: f(st), Value: v})
	}); err != nil {
		return nil, err
	}
	r.ps = ps
	ps = sortSum(ps)
	stacks, values := slices.Grow(r.stacks[:0], len(ps))[:len(ps)], slices.Grow(r.values[:0], len(ps))[:len(ps)]
	r.stacks, r.values = stacks, values
	for i, p := range ps {
		stacks[i], values[i] = p.Stack, p.Value
	}
	spans := r.spans[:0]
	if err := DecodeSpans(b, func(span uint64, st uint32, v int64) {
		spans = append(spans, SpanSample{Span: span, Stack: f(st), Value: v})
	}); err != nil {
		return nil, err
	}
	r.spans = spans
	dst = EncodeSamples(dst, stacks, values)
	return AppendSpans(dst, sortSum(spans)), nil
}

// sortSum sorts samples by (span, stack) and sums those that share both.
func sortSum(ps []SpanSample) []SpanSample {
	sorted := true
	for i := 1; i < len(ps) && sorted; i++ {
		sorted = ps[i-1].Span < ps[i].Span || (ps[i-1].Span == ps[i].Span && ps[i-1].Stack < ps[i].Stack)
	}
	if sorted {
		return ps
	}
	slices.SortFunc(ps, func(a, b SpanSample) int {
		if c := cmp.Compare(a.Span, b.Span); c != 0 {
			return c
		}
		return cmp.Compare(a.Stack, b.Stack)
	})
	out := ps[:0]
	for _, p := range ps {
		if n := len(out); n > 0 && out[n-1].Span == p.Span && out[n-1].Stack == p.Stack {
			out[n-1].Value += p.Value
			continue
		}
		out = append(out, p)
	}
	return out
}

// word returns the eight bytes at b[i:] (zero when fewer remain) and the
// mask of their top bits that are clear: the last byte of each varint.
func word(b []byte, i int) (uint64, uint64) {
	if i < 0 || i+8 > len(b) {
		return 0, 0
	}
	x := binary.LittleEndian.Uint64(b[i:])
	return x, ^x & 0x8080808080808080
}

// ErrStackRange is CheckSamples' error for a stack id beyond the symbols.
var ErrStackRange = errStackRange

var errStackRange = errors.New("encoded samples refer to a stack beyond the symbols")
