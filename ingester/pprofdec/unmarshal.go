package pprofdec

import (
	"errors"
	"unsafe"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
)

// decode decodes a.buf's bytes as a pprof Profile into a.p, as UnmarshalVT
// does, with few allocations: the samples, locations, functions and mappings
// are each one array, the samples' location ids, values and labels and the
// locations' lines are cut from shared arrays, and the strings point into
// a.buf. All of it is the arena's, reused by the next profile it decodes
// once released (Arena.Release). Unknown fields are skipped (UnmarshalVT
// keeps them; nothing here reads them). On any error the caller decodes
// again with UnmarshalVT, which has the canonical errors.
func (a *Arena) decode() error {
	b := a.buf.Bytes()
	// Pass 1: count the repeated messages.
	var nSampleType, nSample, nMapping, nLocation, nFunction, nString int
	err := fields(b, func(num int, wire int, _ uint64, sub []byte) error {
		if wire != 2 {
			return nil
		}
		switch num {
		case 1:
			nSampleType++
		case 2:
			nSample++
		case 3:
			nMapping++
		case 4:
			nLocation++
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
	p := &a.p
	sampleTypes := zeroed(&a.sampleTypes, nSampleType)
	samples := zeroed(&a.samples, nSample)
	mappings := zeroed(&a.mappings, nMapping)
	locations := zeroed(&a.locations, nLocation)
	functions := zeroed(&a.functions, nFunction)
	// The capacities are the counts: a consumer that appends (normalize's
	// repairs) gets its own array instead of writing into the arena's.
	p.SampleType = ptrs(&a.sampleTypePtrs, nSampleType)
	p.Sample = ptrs(&a.samplePtrs, nSample)
	p.Mapping = ptrs(&a.mappingPtrs, nMapping)
	p.Location = ptrs(&a.locationPtrs, nLocation)
	p.Function = ptrs(&a.functionPtrs, nFunction)
	if cap(a.strs) < nString {
		a.strs = make([]string, 0, nString)
	}
	p.StringTable = a.strs[:0:nString]
	return fields(b, func(num int, wire int, v uint64, sub []byte) error {
		switch {
		case num == 1 && wire == 2:
			vt := &sampleTypes[len(p.SampleType)]
			if err := vt.UnmarshalVT(sub); err != nil {
				return err
			}
			p.SampleType = append(p.SampleType, vt)
		case num == 2 && wire == 2:
			s := &samples[len(p.Sample)]
			if err := a.sample(s, sub); err != nil {
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
			if err := a.location(l, sub); err != nil {
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
			// The string shares a.buf's bytes: nothing writes them until
			// the arena is released.
			p.StringTable = append(p.StringTable, unsafe.String(unsafe.SliceData(sub), len(sub)))
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
				a.periodType = googlev1.ValueType{}
				p.PeriodType = &a.periodType
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

// zeroed sets *s to n zero values, reusing its array when it is large enough.
func zeroed[T any](s *[]T, n int) []T {
	if cap(*s) < n {
		*s = make([]T, n)
	} else {
		*s = (*s)[:n]
		clear(*s)
	}
	return *s
}

// ptrs returns an empty slice with room for n pointers, reusing *s's array.
func ptrs[T any](s *[]*T, n int) []*T {
	if cap(*s) < n {
		*s = make([]*T, 0, n)
	}
	*s = (*s)[:n] // what Release clears
	return (*s)[:0:n]
}

var (
	errWireType  = errors.New("pprof: unexpected wire type")
	errTruncated = errors.New("pprof: truncated")
	errOverflow  = errors.New("pprof: varint overflows")
	errGroup     = errors.New("pprof: groups are not supported")
)

// location decodes a Location, its lines cut from shared arrays.
func (a *Arena) location(l *googlev1.Location, b []byte) error {
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

// lineSlots returns n zeroed lines and an empty slice with room for n
// pointers, cut from shared arrays.
func (a *Arena) lineSlots(n int) ([]googlev1.Line, []*googlev1.Line) {
	lines := take(&a.lines, &a.spill.lines, n)
	clear(lines)
	return lines, take(&a.linePtrs, &a.spill.linePtrs, n)[:0]
}

func (a *Arena) sample(s *googlev1.Sample, b []byte) error {
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
			if s.Label == nil {
				// Room for this sample's labels: count them in the rest.
				n := 1
				for c := b; len(c) > 0; {
					tag, m := varint(c)
					if m <= 0 {
						return errTruncated
					}
					if tag == 3<<3|2 {
						n++
					}
					rest, err := skip(c[m:], tag)
					if err != nil {
						return err
					}
					c = rest
				}
				s.Label = take(&a.lblPtrs, &a.spill.lblPtrs, n)[:0]
			}
			lb := &take(&a.lbl, &a.spill.lbl, 1)[0]
			*lb = googlev1.Label{}
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

// arenaChunk is the smallest shared array (elements) an arena allocates.
const arenaChunk = 1024

// take cuts the next n elements from the shared array *s (its length is
// what is taken). When they do not fit, a larger array replaces it: the
// slices already cut keep the old one (whose length is added to *spilled),
// and the arena keeps the new one for the profiles it decodes next.
func take[T any](s *[]T, spilled *int, n int) []T {
	l := len(*s)
	if n > cap(*s)-l {
		*spilled += l
		*s = make([]T, 0, max(n, 2*cap(*s), arenaChunk))
		l = 0
	}
	*s = (*s)[:l+n]
	return (*s)[l : l+n : l+n]
}

// settle gives a shared array that spilled during the last decode room for
// all that decode took, so that a pooled arena decodes the next profile of
// that size without allocating (a large Go heap profile spilled its
// location ids over three arrays on every push).
func settle[T any](s *[]T, spilled *int) {
	if *spilled > 0 {
		*s = make([]T, 0, len(*s)+*spilled)
		*spilled = 0
	}
}

// uints returns an empty slice with room for n, cut from a shared array.
func (a *Arena) uints(n int) []uint64 { return take(&a.u64, &a.spill.u64, n)[:0] }

func (a *Arena) ints(n int) []int64 { return take(&a.i64, &a.spill.i64, n)[:0] }

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
