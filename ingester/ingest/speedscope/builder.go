package speedscope

import (
	"encoding/binary"
	"fmt"
	"math"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
)

// builder accumulates one pprof profile: a function and a location per
// distinct frame name (frames are named, not placed, as Pyroscope keeps
// them), one sample per distinct stack.
type builder struct {
	p       *googlev1.Profile
	names   []string          // the file's shared frames
	locs    []uint64          // frame index -> location id (0: not yet)
	byName  map[string]uint64 // frame name -> location id
	strs    map[string]int64
	samples map[string]int // stack key -> sample index
	key     []byte
	ids     []uint64
}

func newBuilder(k kind, names []string, o Options, period int64) *builder {
	b := &builder{
		p:       &googlev1.Profile{StringTable: []string{""}, TimeNanos: o.TimeNanos, DurationNanos: o.DurationNanos},
		names:   names,
		locs:    make([]uint64, len(names)),
		byName:  map[string]uint64{},
		strs:    map[string]int64{"": 0},
		samples: map[string]int{},
	}
	b.p.SampleType = []*googlev1.ValueType{{Type: b.str(k.sampleType), Unit: b.str(k.sampleUnit)}}
	if k.periodType != "" {
		b.p.PeriodType = &googlev1.ValueType{Type: b.str(k.periodType), Unit: b.str(k.periodUnit)}
		b.p.Period = period
	}
	return b
}

func (b *builder) str(s string) int64 {
	if i, ok := b.strs[s]; ok {
		return i
	}
	i := int64(len(b.p.StringTable))
	b.p.StringTable = append(b.p.StringTable, s)
	b.strs[s] = i
	return i
}

func (b *builder) location(fid int) uint64 {
	if id := b.locs[fid]; id != 0 {
		return id
	}
	name := b.names[fid]
	id, ok := b.byName[name]
	if !ok {
		id = uint64(len(b.p.Location) + 1)
		b.p.Function = append(b.p.Function, &googlev1.Function{Id: id, Name: b.str(name)})
		b.p.Location = append(b.p.Location, &googlev1.Location{Id: id, Line: []*googlev1.Line{{FunctionId: id}}})
		b.byName[name] = id
	}
	b.locs[fid] = id
	return id
}

// add counts v for a stack of frame indexes, root first. Empty stacks and
// zero values add nothing.
func (b *builder) add(stack []int, v int64) error {
	if len(stack) == 0 || v == 0 {
		return nil
	}
	b.ids = b.ids[:0]
	b.key = b.key[:0]
	for i := len(stack) - 1; i >= 0; i-- { // pprof: leaf first
		id := b.location(stack[i])
		b.ids = append(b.ids, id)
		b.key = binary.AppendUvarint(b.key, id)
	}
	if i, ok := b.samples[string(b.key)]; ok {
		s := b.p.Sample[i]
		if s.Value[0] > math.MaxInt64-v {
			return fmt.Errorf("the values of one stack add up to more than %d", int64(math.MaxInt64))
		}
		s.Value[0] += v
		return nil
	}
	b.samples[string(b.key)] = len(b.p.Sample)
	b.p.Sample = append(b.p.Sample, &googlev1.Sample{LocationId: append([]uint64(nil), b.ids...), Value: []int64{v}})
	return nil
}
