package jfr

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
)

// check walks a recording the way jfr-parser reads it (chunk headers, the
// metadata, the constant-pool chain, every event by the metadata's layout)
// and refuses one that jfr-parser would not read safely: jfr-parser sizes
// slices and maps by the counts it reads before reading their elements, and
// follows the constant-pool chain without noticing a loop, so a few corrupt
// bytes would make it allocate gigabytes (a 157 KB mutation of a real
// recording took 1.2 GB and 1 s) or loop forever. Every count and length
// must fit in the bytes left in its event, every event in its chunk.
func check(b []byte) error {
	for pos := 0; pos < len(b); {
		size, err := checkChunk(b, pos)
		if err != nil {
			return fmt.Errorf("chunk at byte %d: %w", pos, err)
		}
		pos += size
	}
	return nil
}

const (
	chunkHeaderSize = 68
	maxNesting      = 8 // classes within classes (StackTrace → StackFrame is 1)
)

var errCount = errors.New("a count exceeds the bytes that could hold it")

// layout is what the metadata says of the types: fields by class id, and
// the ids jfr-parser reads as primitives.
type layout struct {
	fields                             map[uint64][]field
	tInt, tLong, tShort, tFloat, tBool uint64
	tString, tChunkHeader              uint64
}

type field struct {
	typ       uint64
	array, cp bool
}

func checkChunk(b []byte, pos int) (int, error) {
	if len(b)-pos < chunkHeaderSize {
		return 0, errors.New("truncated chunk header")
	}
	h := b[pos:]
	if string(h[:4]) != "FLR\x00" {
		return 0, fmt.Errorf("invalid chunk magic %x", h[:4])
	}
	if v := binary.BigEndian.Uint32(h[4:]); v < 0x20000 || v > 0x2ffff {
		return 0, fmt.Errorf("unknown version %x", v)
	}
	size := binary.BigEndian.Uint64(h[8:])
	cp, meta := binary.BigEndian.Uint64(h[16:]), binary.BigEndian.Uint64(h[24:])
	if size < chunkHeaderSize || size > uint64(len(b)-pos) {
		return 0, fmt.Errorf("chunk size %d, %d bytes left", size, len(b)-pos)
	}
	if cp < chunkHeaderSize || cp >= size || meta < chunkHeaderSize || meta >= size {
		return 0, fmt.Errorf("offsets outside the chunk: constant pool %d, metadata %d", cp, meta)
	}
	chunk := b[pos : pos+int(size)]
	// A field of a real recording takes a byte or more; fields of no bytes
	// (classes without fields, nested) must not make the walk outgrow it.
	steps := 16*len(chunk) + 1<<16
	lay, err := checkMetadata(chunk, int(meta))
	if err != nil {
		return 0, fmt.Errorf("metadata: %w", err)
	}
	if err := checkPools(chunk, int(cp), lay, &steps); err != nil {
		return 0, fmt.Errorf("constant pool: %w", err)
	}
	// The events tile the chunk; the metadata and pool events were walked.
	for at := chunkHeaderSize; at < len(chunk); {
		r := reader{b: chunk, pos: at, end: len(chunk), steps: &steps}
		sz, typ := r.varLong(), r.varLong()
		if r.err != nil || sz == 0 || sz > uint64(len(chunk)-at) {
			return 0, fmt.Errorf("event at byte %d: bad size", at)
		}
		r.end = at + int(sz)
		if fs, ok := lay.fields[typ]; ok && typ > 1 {
			lay.walk(&r, fs, 0)
			if r.err != nil {
				return 0, fmt.Errorf("event of type %d at byte %d: %w", typ, at, r.err)
			}
		}
		at += int(sz)
	}
	return int(size), nil
}

// checkMetadata reads the metadata event as jfr-parser does: root, its
// children (metadata, region), the classes, their fields and the fields'
// children.
func checkMetadata(chunk []byte, at int) (*layout, error) {
	r := reader{b: chunk, pos: at, end: len(chunk)}
	sz := r.varLong()
	if r.err == nil && (sz == 0 || sz > uint64(len(chunk)-at)) {
		return nil, errors.New("bad size")
	}
	r.end = at + int(sz)
	r.varLong() // type
	r.varLong() // start
	r.varLong() // duration
	r.varLong() // metadata id
	strs := make([]string, r.count())
	for i := range strs {
		strs[i] = r.str()
	}
	lay := &layout{fields: map[uint64][]field{}}
	names := map[string]uint64{}
	root := r.element(strs)
	for i := 0; i < root.children && r.err == nil; i++ {
		meta := r.element(strs)
		if meta.name != "metadata" {
			continue // jfr-parser reads no child of a region
		}
		for j := 0; j < meta.children && r.err == nil; j++ {
			cls := r.element(strs)
			id, _ := strconv.ParseUint(cls.attrs["id"], 10, 64)
			var fs []field
			for k := 0; k < cls.children && r.err == nil; k++ {
				f := r.element(strs)
				if f.name == "field" {
					t, _ := strconv.ParseUint(f.attrs["class"], 10, 64)
					fs = append(fs, field{typ: t, array: f.attrs["dimension"] == "1", cp: f.attrs["constantPool"] == "true"})
				}
				for l := 0; l < f.children && r.err == nil; l++ {
					r.element(strs)
				}
			}
			lay.fields[id] = fs
			names[cls.attrs["name"]] = id
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	for _, n := range []string{"int", "long", "short", "float", "boolean", "java.lang.String"} {
		if _, ok := names[n]; !ok {
			return nil, fmt.Errorf("no type %q", n) // as jfr-parser
		}
	}
	lay.tInt, lay.tLong, lay.tShort = names["int"], names["long"], names["short"]
	lay.tFloat, lay.tBool, lay.tString = names["float"], names["boolean"], names["java.lang.String"]
	lay.tChunkHeader = names["jdk.types.ChunkHeader"]
	if _, ok := names["jdk.types.ChunkHeader"]; !ok {
		lay.tChunkHeader = 1<<64 - 1
	}
	return lay, nil
}

// checkPools follows the constant-pool chain (each pool event's delta to the
// previous one), refusing a loop, and walks every pool entry.
func checkPools(chunk []byte, at int, lay *layout, steps *int) error {
	seen := map[int]bool{}
	for {
		if at <= 0 || at >= len(chunk) || seen[at] {
			return fmt.Errorf("the pool chain leaves the chunk or loops at byte %d", at)
		}
		seen[at] = true
		r := reader{b: chunk, pos: at, end: len(chunk), steps: steps}
		sz := r.varLong()
		if r.err == nil && (sz == 0 || sz > uint64(len(chunk)-at)) {
			return fmt.Errorf("pool at byte %d: bad size", at)
		}
		r.end = at + int(sz)
		r.varLong() // type
		r.varLong() // start
		r.varLong() // duration
		delta := int64(r.varLong())
		r.varLong() // flush
		n := r.count()
		for i := 0; i < n && r.err == nil; i++ {
			typ := r.varLong()
			fs, ok := lay.fields[typ]
			switch {
			case !ok:
				return fmt.Errorf("pool at byte %d: unknown type", at)
			case typ == lay.tChunkHeader:
				r.skip(chunkHeaderSize) // jfr-parser skips it whole
				continue
			}
			entries := r.count()
			for e := 0; e < entries && r.err == nil; e++ {
				r.varLong() // key
				if typ == lay.tString {
					r.str() // the class has no fields: the value is a string
					continue
				}
				lay.walk(&r, fs, 0)
			}
		}
		if r.err != nil {
			return fmt.Errorf("pool at byte %d: %w", at, r.err)
		}
		if delta == 0 {
			return nil
		}
		at += int(delta)
	}
}

// walk reads one value of a class with the given fields.
func (l *layout) walk(r *reader, fs []field, depth int) {
	if depth > maxNesting {
		r.fail(errors.New("types nest too deep"))
		return
	}
	for _, f := range fs {
		if *r.steps--; *r.steps < 0 {
			r.fail(errors.New("too many fields for the recording's size"))
			return
		}
		n := 1
		if f.array {
			n = r.count()
		}
		for i := 0; i < n && r.err == nil; i++ {
			switch {
			case f.cp:
				r.varLong()
			case f.typ == l.tString:
				r.str()
			case f.typ == l.tInt, f.typ == l.tLong, f.typ == l.tShort:
				r.varLong()
			case f.typ == l.tBool:
				r.skip(1)
			case f.typ == l.tFloat:
				r.skip(4)
			default:
				nested, ok := l.fields[f.typ]
				if !ok {
					r.fail(fmt.Errorf("field of unknown type %d", f.typ))
					return
				}
				l.walk(r, nested, depth+1)
			}
		}
	}
}

// reader reads varints and strings from b[pos:end], remembering the first
// error; reads after an error return zeros.
type reader struct {
	b        []byte
	pos, end int
	err      error
	steps    *int // fields walked, against the chunk's budget
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *reader) varLong() uint64 {
	var v uint64
	for shift := uint(0); shift <= 56; shift += 7 {
		if r.err != nil || r.pos >= r.end {
			r.fail(errors.New("unexpected end of event"))
			return 0
		}
		c := r.b[r.pos]
		r.pos++
		if shift == 56 {
			return v | uint64(c)<<shift
		}
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			break
		}
	}
	return v
}

// count reads a count of things that each take at least a byte.
func (r *reader) count() int {
	n := r.varLong()
	if r.err == nil && n > uint64(r.end-r.pos) {
		r.fail(errCount)
	}
	if r.err != nil {
		return 0
	}
	return int(n)
}

func (r *reader) skip(n int) {
	if r.err == nil && n > r.end-r.pos {
		r.fail(errors.New("unexpected end of event"))
	}
	if r.err == nil {
		r.pos += n
	}
}

// str reads a string in any of JFR's encodings (Latin-1 kept as bytes: the
// metadata's names are ASCII).
func (r *reader) str() string {
	if r.err != nil || r.pos >= r.end {
		r.fail(errors.New("unexpected end of event"))
		return ""
	}
	enc := r.b[r.pos]
	r.pos++
	switch enc {
	case 0, 1:
		return ""
	case 2:
		r.varLong()
		return ""
	case 3, 5:
		n := r.count()
		start := r.pos
		r.skip(n)
		if r.err != nil {
			return ""
		}
		return string(r.b[start:r.pos])
	case 4:
		n := r.count()
		rs := make([]rune, 0, min(n, 256))
		for i := 0; i < n && r.err == nil; i++ {
			rs = append(rs, rune(r.varLong()))
		}
		return string(rs)
	}
	r.fail(fmt.Errorf("unknown string encoding %d", enc))
	return ""
}

type element struct {
	name     string
	attrs    map[string]string
	children int
}

func (r *reader) element(strs []string) element {
	idx := func() string {
		i := r.varLong()
		if r.err == nil && i >= uint64(len(strs)) {
			r.fail(errors.New("string index out of range"))
		}
		if r.err != nil {
			return ""
		}
		return strs[i]
	}
	e := element{name: idx(), attrs: map[string]string{}}
	n := r.count()
	for i := 0; i < n && r.err == nil; i++ {
		k := idx()
		e.attrs[k] = idx()
	}
	e.children = r.count()
	return e
}
