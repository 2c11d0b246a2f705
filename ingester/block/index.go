package block

import (
	"encoding/binary"

	"github.com/hearth-dev/hearth/ingester/model"
)

// index.bin payload (framed, see codec.go): the label strings, then the
// series in block order (sorted by labels), each with its row range in
// profiles.parquet and the time range of its rows.
//
//	strings: n | len[0..n) | bytes
//	series:  s | for each: label count, then (name, value) string ids
//	         | rows[0..s) | min_time[0..s) (zig-zag) | max_time-min_time[0..s)
//
// Series i holds rows [sum(rows[:i]), sum(rows[:i+1])) of profiles.parquet.

const indexMagic = "HIDX"

const maxIndexRaw = 1 << 30

// Series is one entry of a block's series index.
type Series struct {
	Labels           model.Labels
	FirstRow, Rows   int64 // rows [FirstRow, FirstRow+Rows) of profiles.parquet
	MinTime, MaxTime int64 // ns, inclusive
}

func encodeIndex(series []Series) []byte {
	ids := map[string]uint64{}
	var strs []string
	id := func(s string) uint64 {
		if v, ok := ids[s]; ok {
			return v
		}
		v := uint64(len(strs))
		ids[s] = v
		strs = append(strs, s)
		return v
	}
	var refs []byte
	for _, s := range series {
		refs = binary.AppendUvarint(refs, uint64(len(s.Labels)))
		for _, l := range s.Labels {
			refs = binary.AppendUvarint(refs, id(l.Name))
			refs = binary.AppendUvarint(refs, id(l.Value))
		}
	}
	var b []byte
	b = binary.AppendUvarint(b, uint64(len(strs)))
	for _, s := range strs {
		b = binary.AppendUvarint(b, uint64(len(s)))
	}
	for _, s := range strs {
		b = append(b, s...)
	}
	b = binary.AppendUvarint(b, uint64(len(series)))
	b = append(b, refs...)
	for _, s := range series {
		b = binary.AppendUvarint(b, uint64(s.Rows))
	}
	for _, s := range series {
		b = binary.AppendVarint(b, s.MinTime)
	}
	for _, s := range series {
		b = binary.AppendUvarint(b, uint64(s.MaxTime-s.MinTime))
	}
	return frame(indexMagic, b)
}

// DecodeIndex decodes index.bin.
func DecodeIndex(b []byte) ([]Series, error) {
	payload, err := unframe(indexMagic, b, maxIndexRaw)
	if err != nil {
		return nil, err
	}
	d := &dec{B: payload, Base: ErrCorrupt}
	n := d.Count("index strings", 1)
	strs := make([]string, n)
	lens := make([]int, n)
	total := 0
	for i := range lens {
		l := d.Uvarint("index string length")
		if l > uint64(len(d.B)) {
			d.Fail("index string length")
			break
		}
		lens[i] = int(l)
		total += int(l)
	}
	if all := d.Bytes(total, "index strings"); d.Err == nil {
		s := string(all)
		off := 0
		for i, l := range lens {
			strs[i] = s[off : off+l]
			off += l
		}
	}
	get := func(i uint32) string {
		if int(i) < len(strs) {
			return strs[i]
		}
		return ""
	}
	ns := d.Count("series", 4)
	series := make([]Series, ns)
	for i := range series {
		nl := d.Count("series labels", 2)
		ls := make(model.Labels, nl)
		for j := range ls {
			ls[j].Name = get(d.U32("label name", uint64(n)))
			ls[j].Value = get(d.U32("label value", uint64(n)))
		}
		series[i].Labels = ls
	}
	var row int64
	for i := range series {
		r := d.Uvarint("series rows")
		if d.Err == nil && (r == 0 || r > 1<<40) {
			d.Failf("series %d has %d rows", i, r)
		}
		series[i].FirstRow, series[i].Rows = row, int64(r)
		row += int64(r)
	}
	for i := range series {
		series[i].MinTime = d.Varint("series min time")
	}
	for i := range series {
		span := d.Uvarint("series time span")
		series[i].MaxTime = series[i].MinTime + int64(span)
		if d.Err == nil && series[i].MaxTime < series[i].MinTime {
			d.Failf("series %d: time span overflows", i)
		}
	}
	if err := d.Done("index"); err != nil {
		return nil, err
	}
	return series, nil
}

func compareLabels(a, b model.Labels) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i].Name != b[i].Name {
			if a[i].Name < b[i].Name {
				return -1
			}
			return 1
		}
		if a[i].Value != b[i].Value {
			if a[i].Value < b[i].Value {
				return -1
			}
			return 1
		}
	}
	return len(a) - len(b)
}
