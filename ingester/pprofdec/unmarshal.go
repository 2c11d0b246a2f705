package pprofdec

import (
	"errors"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
)

// unmarshal decodes a pprof Profile as UnmarshalVT does, with fewer
// allocations: the samples, locations, functions and mappings are each one
// array, and the samples' location ids and values are cut from shared
// arrays. Samples dominate a profile and the collector's work is per object,
// so this roughly halves the allocations of decoding. Unknown fields are
// skipped (UnmarshalVT keeps them; nothing here reads them). On any error the
// caller decodes again with UnmarshalVT, which has the canonical errors.
func unmarshal(p *googlev1.Profile, b []byte) error {
	// Pass 1: count the repeated messages.
	var nSample, nMapping, nLocation, nFunction, nString, sampleBytes, locationBytes int
	err := fields(b, func(num int, wire int, _ uint64, sub []byte) error {
		if wire != 2 {
			return nil
		}
		switch num {
		case 2:
			nSample++
			sampleBytes += len(sub)
		case 3:
			nMapping++
		case 4:
			nLocation++
			locationBytes += len(sub)
		case 5:
			nFunction++
		case 6:
			nString++
		}
		return nil
	})
	if err != nil {
		return err
	}
	samples := make([]googlev1.Sample, nSample)
	mappings := make([]googlev1.Mapping, nMapping)
	locations := make([]googlev1.Location, nLocation)
	functions := make([]googlev1.Function, nFunction)
	p.Sample = make([]*googlev1.Sample, 0, nSample)
	p.Mapping = make([]*googlev1.Mapping, 0, nMapping)
	p.Location = make([]*googlev1.Location, 0, nLocation)
	p.Function = make([]*googlev1.Function, 0, nFunction)
	p.StringTable = make([]string, 0, nString)
	// Each id, value or label takes at least a byte of the samples: the
	// arrays are never larger than that (small profiles get small arrays).
	ar := arena{u64Left: sampleBytes, i64Left: sampleBytes, lblLeft: sampleBytes / 2, lineLeft: locationBytes / 2}
	return fields(b, func(num int, wire int, v uint64, sub []byte) error {
		switch {
		case num == 1 && wire == 2:
			vt := new(googlev1.ValueType)
			if err := vt.UnmarshalVT(sub); err != nil {
				return err
			}
			p.SampleType = append(p.SampleType, vt)
		case num == 2 && wire == 2:
			s := &samples[len(p.Sample)]
			if err := ar.sample(s, sub); err != nil {
				return err
			}
			p.Sample = append(p.Sample, s)
		case num == 3 && wire == 2:
			m := &mappings[len(p.Mapping)]
			if err := m.UnmarshalVT(sub); err != nil {
				return err
			}
			p.Mapping = append(p.Mapping, m)
		case num == 4 && wire == 2:
			l := &locations[len(p.Location)]
			if err := ar.location(l, sub); err != nil {
				return err
			}
			p.Location = append(p.Location, l)
		case num == 5 && wire == 2:
			f := &functions[len(p.Function)]
			if err := f.UnmarshalVT(sub); err != nil {
				return err
			}
			p.Function = append(p.Function, f)
		case num == 6 && wire == 2:
			p.StringTable = append(p.StringTable, string(sub))
		case num == 7 && wire == 0:
			p.DropFrames = int64(v)
		case num == 8 && wire == 0:
			p.KeepFrames = int64(v)
		case num == 9 && wire == 0:
			p.TimeNanos = int64(v)
		case num == 10 && wire == 0:
			p.DurationNanos = int64(v)
		case num == 11 && wire == 2:
			if p.PeriodType == nil {
				p.PeriodType = new(googlev1.ValueType)
			}
			if err := p.PeriodType.UnmarshalVT(sub); err != nil {
				return err
			}
		case num == 12 && wire == 0:
			p.Period = int64(v)
		case num == 13 && wire == 0:
			p.Comment = append(p.Comment, int64(v))
		case num == 13 && wire == 2:
			return packed(sub, func(v uint64) { p.Comment = append(p.Comment, int64(v)) })
		case num == 14 && wire == 0:
			p.DefaultSampleType = int64(v)
		case num >= 1 && num <= 14:
			return errWireType
		}
		return nil
	})
}

var (
	errWireType  = errors.New("pprof: unexpected wire type")
	errTruncated = errors.New("pprof: truncated")
	errOverflow  = errors.New("pprof: varint overflows")
	errGroup     = errors.New("pprof: groups are not supported")
)

// arena hands out the samples' location ids, values and labels from shared arrays.
type arena struct {
	u64      []uint64
	i64      []int64
	lbl      []googlev1.Label
	lines    []googlev1.Line
	linePtrs []*googlev1.Line
	// Upper bounds of what the profile still needs.
	u64Left, i64Left, lblLeft, lineLeft int
}

// location decodes a Location, its lines cut from shared arrays.
func (a *arena) location(l *googlev1.Location, b []byte) error {
	nLines := 0
	for c := b; len(c) > 0; {
		tag, n := varint(c)
		if n <= 0 {
			return errTruncated
		}
		if tag == 4<<3|2 {
			nLines++
		}
		rest, err := skip(c[n:], tag)
		if err != nil {
			return err
		}
		c = rest
	}
	var lines []googlev1.Line
	if nLines > 0 {
		lines, l.Line = a.lineSlots(nLines)
	}
	for len(b) > 0 {
		tag, n := varint(b)
		if n <= 0 {
			return errTruncated
		}
		b = b[n:]
		switch tag {
		case 1 << 3, 2 << 3, 3 << 3, 5 << 3:
			v, n := varint(b)
			if n <= 0 {
				return errTruncated
			}
			b = b[n:]
			switch tag >> 3 {
			case 1:
				l.Id = v
			case 2:
				l.MappingId = v
			case 3:
				l.Address = v
			case 5:
				l.IsFolded = v != 0
			}
		case 4<<3 | 2:
			m, n := varint(b)
			if n <= 0 || m > uint64(len(b)-n) {
				return errTruncated
			}
			sub := b[n : n+int(m)]
			b = b[n+int(m):]
			ln := &lines[len(l.Line)]
			if err := line(ln, sub); err != nil {
				return err
			}
			l.Line = append(l.Line, ln)
		default:
			if num := tag >> 3; num >= 1 && num <= 5 {
				return errWireType
			}
			rest, err := skip(b, tag)
			if err != nil {
				return err
			}
			b = rest
		}
	}
	return nil
}

// lineSlots returns n lines and an empty slice with room for n pointers,
// cut from shared arrays.
func (a *arena) lineSlots(n int) ([]googlev1.Line, []*googlev1.Line) {
	if n > len(a.lines) {
		c := max(n, min(arenaChunk/4, a.lineLeft))
		a.lineLeft -= c
		a.lines = make([]googlev1.Line, c)
		a.linePtrs = make([]*googlev1.Line, c)
	}
	lines, ptrs := a.lines[:n:n], a.linePtrs[:0:n]
	a.lines, a.linePtrs = a.lines[n:], a.linePtrs[n:]
	return lines, ptrs
}

func (a *arena) sample(s *googlev1.Sample, b []byte) error {
	for len(b) > 0 {
		tag, n := varint(b)
		if n <= 0 {
			return errTruncated
		}
		b = b[n:]
		switch tag {
		case 1<<3 | 2, 2<<3 | 2: // location_id, value: packed
			l, n := varint(b)
			if n <= 0 || l > uint64(len(b)-n) {
				return errTruncated
			}
			sub := b[n : n+int(l)]
			b = b[n+int(l):]
			var ok bool
			if tag>>3 == 1 {
				if len(s.LocationId) == 0 {
					s.LocationId = a.uints(count(sub))
				}
				s.LocationId, ok = appendPacked(s.LocationId, sub)
			} else {
				if len(s.Value) == 0 {
					s.Value = a.ints(count(sub))
				}
				s.Value, ok = appendPacked(s.Value, sub)
			}
			if !ok {
				return errTruncated
			}
		case 1 << 3, 2 << 3: // unpacked
			v, n := varint(b)
			if n <= 0 {
				return errTruncated
			}
			b = b[n:]
			if tag>>3 == 1 {
				s.LocationId = append(s.LocationId, v)
			} else {
				s.Value = append(s.Value, int64(v))
			}
		case 3<<3 | 2: // label
			l, n := varint(b)
			if n <= 0 || l > uint64(len(b)-n) {
				return errTruncated
			}
			sub := b[n : n+int(l)]
			b = b[n+int(l):]
			if len(a.lbl) == 0 {
				n := max(1, min(256, a.lblLeft))
				a.lblLeft -= n
				a.lbl = make([]googlev1.Label, n)
			}
			lb := &a.lbl[0]
			a.lbl = a.lbl[1:]
			if err := lb.UnmarshalVT(sub); err != nil {
				return err
			}
			s.Label = append(s.Label, lb)
		default:
			if num := tag >> 3; num >= 1 && num <= 3 {
				return errWireType
			}
			// Another field: skip it (fields parses one from its tag on).
			rest, err := skip(b, tag)
			if err != nil {
				return err
			}
			b = rest
		}
	}
	return nil
}

// appendPacked appends the varints of a packed field.
func appendPacked[T uint64 | int64](dst []T, b []byte) ([]T, bool) {
	for len(b) > 0 {
		if c := b[0]; c < 0x80 {
			dst = append(dst, T(c))
			b = b[1:]
			continue
		}
		v, n := varint(b)
		if n <= 0 {
			return dst, false
		}
		dst = append(dst, T(v))
		b = b[n:]
	}
	return dst, true
}

// skip skips the value of a field whose tag was just read.
func skip(b []byte, tag uint64) ([]byte, error) {
	if num := tag >> 3; num == 0 || num > 1<<29 {
		return nil, errTruncated // UnmarshalVT refuses some of these: let it
	}
	switch tag & 7 {
	case 0:
		_, n := varint(b)
		if n <= 0 {
			return nil, errTruncated
		}
		return b[n:], nil
	case 1:
		if len(b) < 8 {
			return nil, errTruncated
		}
		return b[8:], nil
	case 2:
		l, n := varint(b)
		if n <= 0 || l > uint64(len(b)-n) {
			return nil, errTruncated
		}
		return b[n+int(l):], nil
	case 5:
		if len(b) < 4 {
			return nil, errTruncated
		}
		return b[4:], nil
	}
	return nil, errGroup
}

const arenaChunk = 4096 // 32 KiB: the largest small-object size class

// uints returns an empty slice with room for n, cut from a shared array.
func (a *arena) uints(n int) []uint64 {
	if n > cap(a.u64)-len(a.u64) {
		c := max(n, min(arenaChunk, a.u64Left))
		a.u64Left -= c
		a.u64 = make([]uint64, 0, c)
	}
	s := a.u64[len(a.u64) : len(a.u64) : len(a.u64)+n]
	a.u64 = a.u64[:len(a.u64)+n]
	return s
}

func (a *arena) ints(n int) []int64 {
	if n > cap(a.i64)-len(a.i64) {
		c := max(n, min(arenaChunk, a.i64Left))
		a.i64Left -= c
		a.i64 = make([]int64, 0, c)
	}
	s := a.i64[len(a.i64) : len(a.i64) : len(a.i64)+n]
	a.i64 = a.i64[:len(a.i64)+n]
	return s
}

// count is the number of varints in a packed field.
func count(b []byte) int {
	n := 0
	for _, c := range b {
		if c < 0x80 {
			n++
		}
	}
	return n
}

func packed(b []byte, fn func(uint64)) error {
	for len(b) > 0 {
		v, n := varint(b)
		if n <= 0 {
			return errTruncated
		}
		fn(v)
		b = b[n:]
	}
	return nil
}

// varint decodes a varint: its value and length, or length 0 (truncated) or
// -1 (longer than 10 bytes).
func varint(b []byte) (uint64, int) {
	var v uint64
	for i := 0; i < len(b); i++ {
		if i == 10 {
			return 0, -1
		}
		c := b[i]
		v |= uint64(c&0x7f) << (7 * uint(i))
		if c < 0x80 {
			return v, i + 1
		}
	}
	return 0, 0
}

// fields calls fn for each field of a message: its number, wire type, and
// value (varint) or contents (length-delimited).
func fields(b []byte, fn func(num, wire int, v uint64, sub []byte) error) error {
	for len(b) > 0 {
		tag, n := varint(b)
		if n <= 0 {
			return errTruncated
		}
		b = b[n:]
		num, wire := tag>>3, int(tag&7)
		if num == 0 || num > 1<<29 {
			return errTruncated
		}
		var v uint64
		var sub []byte
		switch wire {
		case 0:
			if v, n = varint(b); n <= 0 {
				if n < 0 {
					return errOverflow
				}
				return errTruncated
			}
			b = b[n:]
		case 1:
			if len(b) < 8 {
				return errTruncated
			}
			b = b[8:]
		case 2:
			l, n := varint(b)
			if n <= 0 || l > uint64(len(b)-n) {
				return errTruncated
			}
			sub = b[n : n+int(l)]
			b = b[n+int(l):]
		case 5:
			if len(b) < 4 {
				return errTruncated
			}
			b = b[4:]
		default:
			return errGroup
		}
		if err := fn(int(num), wire, v, sub); err != nil {
			return err
		}
	}
	return nil
}

func line(ln *googlev1.Line, b []byte) error {
	for len(b) > 0 {
		tag, n := varint(b)
		if n <= 0 {
			return errTruncated
		}
		b = b[n:]
		switch tag {
		case 1 << 3, 2 << 3:
			v, n := varint(b)
			if n <= 0 {
				return errTruncated
			}
			b = b[n:]
			if tag>>3 == 1 {
				ln.FunctionId = v
			} else {
				ln.Line = int64(v)
			}
		default:
			if num := tag >> 3; num >= 1 && num <= 2 {
				return errWireType
			}
			rest, err := skip(b, tag)
			if err != nil {
				return err
			}
			b = rest
		}
	}
	return nil
}
