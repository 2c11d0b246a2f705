package remote

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/hearth-dev/hearth/ingester/block"
	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/symdb"

	"github.com/hearth-dev/hearth/internal/varint"
)

// Select response (Content-Type application/x-hearth-selections):
//
//	"HSEL" | version(1) | uvarint n | n × selection
//	selection: uvarint len | symbols.bin (ingester/block: zstd, crc32c) — pruned to the rows' stacks
//	           uvarint raw length | uvarint len | zstd(rows payload)
//	rows payload:
//	  strings: n | len[0..n) | bytes          (label names and values)
//	  series:  s | for each: label count, (name, value) string ids, row count
//	  rows, series after series: id [16]byte | time (varint, delta from the previous row of the series)
//	                             | total (varint) | uvarint len | samples (head.EncodeSamples)
//
// Series-labels response (application/x-hearth-labels):
//
//	"HLBL" | version(1) | uvarint raw length | zstd(strings as above | s | per series: count, (name, value) ids)
//
// Every reference is checked on decode: a decoded selection never makes the
// querier index out of range, whatever the bytes.

const (
	selectMagic   = "HSEL"
	labelsMagic   = "HLBL"
	formatVersion = 1
)

// ErrCorrupt wraps every decode error.
var ErrCorrupt = errors.New("corrupt remote response")

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

var zenc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))

type strTable struct {
	ids  map[string]uint64
	strs []string
}

func (t *strTable) id(s string) uint64 {
	if v, ok := t.ids[s]; ok {
		return v
	}
	v := uint64(len(t.strs))
	t.ids[s] = v
	t.strs = append(t.strs, s)
	return v
}

func (t *strTable) appendTo(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(t.strs)))
	for _, s := range t.strs {
		b = binary.AppendUvarint(b, uint64(len(s)))
	}
	for _, s := range t.strs {
		b = append(b, s...)
	}
	return b
}

func appendLabels(b []byte, st *strTable, ls model.Labels) []byte {
	b = binary.AppendUvarint(b, uint64(len(ls)))
	for _, l := range ls {
		b = binary.AppendUvarint(b, st.id(l.Name))
		b = binary.AppendUvarint(b, st.id(l.Value))
	}
	return b
}

func compressed(b []byte, payload []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(payload)))
	z := zenc.EncodeAll(payload, nil)
	b = binary.AppendUvarint(b, uint64(len(z)))
	return append(b, z...)
}

// EncodeSelections encodes selections for the wire, pruning each one's
// symbols to the stacks its rows use. Selections without rows are left out.
//
// Rows are read one series at a time through head.SeriesRows.Unpacked, so a
// head.Tenant.SelectPacked selection's packed rows are decompressed a series
// at a time (twice, as the block writer does: once to find the stacks they
// use, once to encode them), and the rows payload is compressed as it is
// written: beyond the answer, the encoder holds one series' rows.
func EncodeSelections(sels []head.Selection) ([]byte, error) {
	return EncodeSelectionsLimit(sels, 0)
}

// EncodeSelectionsLimit is EncodeSelections that stops with an error
// wrapping ErrTooLarge once the answer is more than maxBytes (<= 0: no limit),
// before encoding the rest.
func EncodeSelectionsLimit(sels []head.Selection, maxBytes int64) ([]byte, error) {
	n := 0
	for _, sel := range sels {
		if len(sel.Series) > 0 {
			n++
		}
	}
	out := append([]byte(selectMagic), formatVersion)
	out = binary.AppendUvarint(out, uint64(n))
	zw := zstreams.Get().(*zstd.Encoder)
	defer zstreams.Put(zw)
	var err error
	for i := range sels {
		if len(sels[i].Series) == 0 {
			continue
		}
		if out, err = encodeSelection(out, &sels[i], zw, maxBytes); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// zstreams are streaming encoders of the rows payloads (reset per payload).
// Their window is 1 MiB: a decoder (this version's and the previous ones')
// refuses a frame whose window is more than 1 MiB beyond its declared raw
// length, and a streamed frame declares no content size.
var zstreams = sync.Pool{New: func() any {
	zw, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<20))
	return zw
}}

// usedStacks is the pruning pass: every stack sel's rows use, a series at a
// time (unpacked into *buf).
func usedStacks(sel *head.Selection, buf *[]byte) (*symdb.Snapshot, []uint32, error) {
	var derr error
	pruned, nodeMap := block.PruneSymbols(sel.Symbols, func(use func(uint32)) {
		for i := range sel.Series {
			sr := &sel.Series[i]
			*buf = (*buf)[:0]
			for _, p := range sr.UnpackedTo(0, len(sr.Profiles), buf) {
				if err := head.DecodeSamples(p.Samples, func(st uint32, _ int64) { use(st) }); err != nil && derr == nil {
					derr = fmt.Errorf("series %s: %w", sr.Labels, err)
				}
			}
		}
	})
	return pruned, nodeMap, derr
}

func encodeSelection(out []byte, sel *head.Selection, zw *zstd.Encoder, maxBytes int64) ([]byte, error) {
	syms := sel.Symbols
	var nodeMap []uint32
	var unpacked []byte // one series' packed rows, decompressed
	if syms != nil {
		pruned, m, err := usedStacks(sel, &unpacked)
		if err != nil {
			return nil, err
		}
		if m != nil {
			syms, nodeMap = pruned, m
		}
	} else {
		syms = &symdb.Snapshot{Strings: []string{""}, Mappings: []symdb.Mapping{{}}, Functions: []symdb.Function{{}}, Locations: []symdb.Location{{}}, Nodes: []symdb.Node{{}}}
	}
	sb := block.EncodeSymbols(syms)
	out = binary.AppendUvarint(out, uint64(len(sb)))
	out = append(out, sb...)
	if err := overLimit(int64(len(out)), maxBytes); err != nil {
		return nil, err
	}

	// The payload's head (strings, series) needs only the labels and counts.
	st := &strTable{ids: map[string]uint64{}}
	var series []byte
	series = binary.AppendUvarint(series, uint64(len(sel.Series)))
	for _, s := range sel.Series {
		series = appendLabels(series, st, s.Labels)
		series = binary.AppendUvarint(series, uint64(len(s.Profiles)))
	}
	var z bytes.Buffer
	zw.Reset(&z)
	cw := &countingWriter{w: zw}
	_, _ = cw.Write(st.appendTo(nil))
	_, _ = cw.Write(series)
	var row, samples []byte
	var rm head.Remapper
	remap := func(st uint32) uint32 { return nodeMap[st] }
	for i := range sel.Series {
		sr := &sel.Series[i]
		prev := int64(0)
		unpacked = unpacked[:0]
		for _, p := range sr.UnpackedTo(0, len(sr.Profiles), &unpacked) {
			s := p.Samples
			if nodeMap != nil {
				var err error
				if samples, err = rm.Remap(samples[:0], s, remap); err != nil { // keeps the span samples
					return nil, err
				}
				s = samples
			}
			row = append(row[:0], p.ID[:]...)
			row = binary.AppendVarint(row, p.TimeNanos-prev)
			prev = p.TimeNanos
			row = binary.AppendVarint(row, p.Total)
			row = binary.AppendUvarint(row, uint64(len(s)))
			_, _ = cw.Write(row)
			_, _ = cw.Write(s)
		}
		if cw.err != nil {
			return nil, cw.err
		}
		if err := overLimit(int64(len(out)+z.Len()), maxBytes); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	if err := overLimit(int64(len(out)+z.Len()), maxBytes); err != nil {
		return nil, err
	}
	out = binary.AppendUvarint(out, uint64(cw.n))
	out = binary.AppendUvarint(out, uint64(z.Len()))
	return append(out, z.Bytes()...), nil
}

func overLimit(n, maxBytes int64) error {
	if maxBytes > 0 && n > maxBytes {
		return fmt.Errorf("%w: the answer is more than %d bytes", ErrTooLarge, maxBytes)
	}
	return nil
}

// countingWriter counts what it passes on; the first error sticks.
type countingWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countingWriter) Write(b []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	k, err := c.w.Write(b)
	c.n += int64(k)
	c.err = err
	return k, err
}

// EncodeLabels encodes series label sets.
func EncodeLabels(all []model.Labels) []byte {
	st := &strTable{ids: map[string]uint64{}}
	var series []byte
	series = binary.AppendUvarint(series, uint64(len(all)))
	for _, ls := range all {
		series = appendLabels(series, st, ls)
	}
	payload := append(st.appendTo(nil), series...)
	return compressed(append([]byte(labelsMagic), formatVersion), payload)
}

// dec reads varints with bounds checks; the first error sticks.
type dec struct{ varint.Decoder }

func newDec(b []byte) *dec { return &dec{Decoder: varint.Decoder{B: b, Base: ErrCorrupt}} }

func (d *dec) header(magic string) {
	if len(d.B) < len(magic)+1 || string(d.B[:len(magic)]) != magic {
		d.Failf("bad magic, want %q", magic)
		return
	}
	if v := d.B[len(magic)]; v != formatVersion {
		d.Failf("format version %d, this build reads %d", v, formatVersion)
		return
	}
	d.B = d.B[len(magic)+1:]
}

// budget is what a response may still decompress into.
type budget struct{ left int64 }

func (bu *budget) take(n uint64, what string) error {
	if n > uint64(bu.left) {
		return fmt.Errorf("%w: %s needs %d more bytes than the response limit allows", ErrTooLarge, what, int64(n)-bu.left)
	}
	bu.left -= int64(n)
	return nil
}

// ErrTooLarge reports a response over the configured size limit.
var ErrTooLarge = errors.New("response too large")

func (d *dec) decompressed(bu *budget, what string) []byte {
	raw := d.Uvarint(what + " length")
	z := d.Bytes(d.Len(what+" compressed length"), what)
	if d.Err != nil {
		return nil
	}
	if err := bu.take(raw, what); err != nil {
		d.Err = err
		return nil
	}
	zr, err := zstd.NewReader(bytes.NewReader(z), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(raw+1<<20))
	if err != nil {
		d.Failf("%s: %v", what, err)
		return nil
	}
	defer zr.Close()
	out := make([]byte, raw)
	if _, err := io.ReadFull(zr, out); err != nil {
		d.Failf("%s: %v", what, err)
		return nil
	}
	var one [1]byte
	if k, _ := zr.Read(one[:]); k != 0 {
		d.Failf("%s: longer than its declared %d bytes", what, raw)
		return nil
	}
	return out
}

func decodeStrings(d *dec) []string {
	n := d.Count("strings", 1)
	lens := make([]uint64, n)
	var total uint64
	for i := range lens {
		lens[i] = d.Uvarint("string length")
		total += lens[i]
		if total > uint64(len(d.B)) {
			d.Fail("string lengths")
			return nil
		}
	}
	all := string(d.Bytes(int(total), "strings"))
	if d.Err != nil {
		return nil
	}
	strs := make([]string, n)
	off := uint64(0)
	for i, l := range lens {
		strs[i] = all[off : off+l]
		off += l
	}
	return strs
}

func decodeLabelSet(d *dec, strs []string) model.Labels {
	n := d.Count("label count", 2)
	ls := make(model.Labels, n)
	for i := range ls {
		a, b := d.Uvarint("label name"), d.Uvarint("label value")
		if d.Err != nil {
			return nil
		}
		if a >= uint64(len(strs)) || b >= uint64(len(strs)) {
			d.Failf("label string id out of range")
			return nil
		}
		ls[i] = model.Label{Name: strs[a], Value: strs[b]}
	}
	return ls
}

// DecodeSelections decodes a select response, decompressing at most
// maxBytes (symbols and rows together; <= 0: 1 GiB).
func DecodeSelections(b []byte, maxBytes int64) ([]head.Selection, error) {
	if maxBytes <= 0 {
		maxBytes = 1 << 30
	}
	bu := &budget{left: maxBytes}
	d := newDec(b)
	d.header(selectMagic)
	n := d.Count("selections", 2)
	var out []head.Selection
	for i := 0; i < n && d.Err == nil; i++ {
		sb := d.Bytes(d.Len("symbols length"), "symbols")
		if d.Err != nil {
			break
		}
		if len(sb) < 6 {
			return nil, corrupt("symbols: %d bytes", len(sb))
		}
		// symbols.bin declares its raw length after magic and version.
		if raw, k := binary.Uvarint(sb[5:]); k > 0 {
			if err := bu.take(raw, "symbols"); err != nil {
				return nil, err
			}
		}
		syms, err := block.DecodeSymbolsLimit(sb, int(min(bu.left+1<<20, 1<<30)))
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		payload := d.decompressed(bu, "rows")
		if d.Err != nil {
			break
		}
		sel, err := decodeRows(payload, syms)
		if err != nil {
			return nil, err
		}
		out = append(out, sel)
	}
	if d.Err == nil && len(d.B) != 0 {
		d.Failf("%d trailing bytes", len(d.B))
	}
	if d.Err != nil {
		return nil, d.Err
	}
	return out, nil
}

func decodeRows(payload []byte, syms *symdb.Snapshot) (head.Selection, error) {
	d := newDec(payload)
	strs := decodeStrings(d)
	ns := d.Count("series", 2)
	sel := head.Selection{Symbols: syms, Series: make([]head.SeriesRows, 0, ns)}
	counts := make([]int, 0, ns)
	for i := 0; i < ns && d.Err == nil; i++ {
		ls := decodeLabelSet(d, strs)
		nr := d.Count("rows", 19)
		sel.Series = append(sel.Series, head.SeriesRows{Labels: ls})
		counts = append(counts, nr)
	}
	nodes := uint32(len(syms.Nodes))
	var bad bool
	for i := range sel.Series {
		if d.Err != nil {
			break
		}
		rows := make([]head.Profile, 0, counts[i])
		prev := int64(0)
		for j := 0; j < counts[i] && d.Err == nil; j++ {
			var p head.Profile
			id := d.Bytes(16, "profile id")
			if d.Err != nil {
				break
			}
			copy(p.ID[:], id)
			p.TimeNanos = prev + d.Varint("time")
			prev = p.TimeNanos
			p.Total = d.Varint("total")
			p.Samples = d.Bytes(d.Len("samples length"), "samples")
			if d.Err != nil {
				break
			}
			if err := head.DecodeSamples(p.Samples, func(st uint32, _ int64) { bad = bad || st >= nodes }); err != nil {
				return head.Selection{}, corrupt("series %d row %d: %v", i, j, err)
			}
			if bad {
				return head.Selection{}, corrupt("series %d row %d: stack id beyond the %d symbols nodes", i, j, nodes)
			}
			rows = append(rows, p)
		}
		sel.Series[i].Profiles = rows
	}
	if d.Err == nil && len(d.B) != 0 {
		d.Failf("rows: %d trailing bytes", len(d.B))
	}
	if d.Err != nil {
		return head.Selection{}, d.Err
	}
	return sel, nil
}

// DecodeLabels decodes a series-labels response, decompressing at most maxBytes (<= 0: 1 GiB).
func DecodeLabels(b []byte, maxBytes int64) ([]model.Labels, error) {
	if maxBytes <= 0 {
		maxBytes = 1 << 30
	}
	d := newDec(b)
	d.header(labelsMagic)
	payload := d.decompressed(&budget{left: maxBytes}, "labels")
	if d.Err == nil && len(d.B) != 0 {
		d.Failf("%d trailing bytes", len(d.B))
	}
	if d.Err != nil {
		return nil, d.Err
	}
	d = newDec(payload)
	strs := decodeStrings(d)
	n := d.Count("series", 1)
	out := make([]model.Labels, 0, n)
	for i := 0; i < n && d.Err == nil; i++ {
		out = append(out, decodeLabelSet(d, strs))
	}
	if d.Err == nil && len(d.B) != 0 {
		d.Failf("labels: %d trailing bytes", len(d.B))
	}
	if d.Err != nil {
		return nil, d.Err
	}
	return out, nil
}
