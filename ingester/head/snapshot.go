package head

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"unsafe"

	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/symdb"
)

// A head snapshot is the head's state written to a file, so that a restart
// loads it instead of decoding every profile of the WAL again (the store
// names the file and decides when to write and whether to trust it). This
// file is only the encoding.
//
// Format (version 1; integers little endian, uvarint/varint as in
// encoding/binary):
//
//	header   "HEARTHHS" | version u32 | CRC32C of bytes [0,12) u32
//	sections kind u8 | payload length u64 | payload | CRC32C of kind, length and payload u32
//
// Sections, in this order: meta (the WAL positions the snapshot covers),
// then per tenant: tenant (name, counters, series count), series batches
// until that many series, symbols; then end (the tenant count), so a file
// cut short is never read as complete. Rows keep their encoded samples,
// packed blocks their compressed bytes and aggregates theirs: loading copies
// bytes and builds maps, it re-encodes nothing. The version at byte 8 and
// the header CRC keep their places in every version.
const (
	snapshotMagic = "HEARTHHS"
	// SnapshotVersion is the version this release writes and reads.
	SnapshotVersion = 1

	secMeta    = 1
	secTenant  = 2
	secSeries  = 3
	secSymbols = 4
	secEnd     = 5

	// snapshotBatchBytes is about the size of a series section.
	snapshotBatchBytes = 4 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// SnapshotMeta is what a snapshot covers of the WAL, for the store.
type SnapshotMeta struct {
	// WALSegment is the first segment whose records the snapshot may lack:
	// every record before it is in the snapshot, some after it may be too.
	WALSegment uint64
	// HeadStart is the first segment of the snapshotted head's records (the
	// earlier ones are in blocks or in an earlier head).
	HeadStart   uint64
	CreatedNano int64
}

// SnapshotStats count what a snapshot holds.
type SnapshotStats struct {
	Tenants, Series, Rows int64
	Bytes                 int64 // of the file
}

// ErrSnapshotVersion is returned by ReadSnapshot for a snapshot of another
// version (errors.Is): a release that does not read it ignores the file.
var ErrSnapshotVersion = errors.New("head snapshot of a version this release does not read")

// WriteSnapshot writes h to w. It reads each tenant's series under a short
// read lock (slice headers, as a query does) and its symbols after them, so
// every stack id a written row uses is in the written symbols (tables are
// append-only). Pushes continue meanwhile: rows appended during the write
// may or may not be in the snapshot.
func WriteSnapshot(w io.Writer, h *Head, meta SnapshotMeta) (SnapshotStats, error) {
	sw := &snapWriter{w: w}
	var st SnapshotStats
	var hdr [16]byte
	copy(hdr[:], snapshotMagic)
	binary.LittleEndian.PutUint32(hdr[8:], SnapshotVersion)
	binary.LittleEndian.PutUint32(hdr[12:], crc32.Checksum(hdr[:12], crcTable))
	sw.write(hdr[:])
	b := binary.AppendUvarint(nil, meta.WALSegment)
	b = binary.AppendUvarint(b, meta.HeadStart)
	b = binary.AppendVarint(b, meta.CreatedNano)
	sw.section(secMeta, b)
	tenants := h.Tenants()
	written := 0
	var body []byte
	for _, name := range tenants {
		t := h.Tenant(name)
		if t == nil {
			continue // dropped meanwhile
		}
		t.mu.RLock()
		views := make([]seriesView, len(t.series))
		for i, s := range t.series {
			views[i] = seriesView{labels: s.labels, profiles: s.profiles, packed: s.packed, aggs: append([]chunkAgg(nil), s.aggs...), minT: s.minT, maxT: s.maxT}
		}
		minT, maxT, profiles, samples := t.minT, t.maxT, t.profiles, t.samples
		t.mu.RUnlock()
		syms := t.syms.Snapshot() // after the rows: it has every symbol they use

		b = appendStr(b[:0], name)
		b = binary.AppendVarint(b, minT)
		b = binary.AppendVarint(b, maxT)
		b = binary.AppendUvarint(b, uint64(profiles))
		b = binary.AppendUvarint(b, uint64(samples))
		b = binary.AppendUvarint(b, uint64(len(views)))
		sw.section(secTenant, b)
		for i := 0; i < len(views); {
			n := 0
			body = body[:0] // one buffer for every batch: a snapshot is written every few seconds under load
			for i < len(views) && len(body) < snapshotBatchBytes {
				body = appendSeries(body, &views[i])
				st.Rows += int64(len(views[i].profiles))
				i++
				n++
			}
			sw.section(secSeries, binary.AppendUvarint(b[:0], uint64(n)), body)
		}
		sw.section(secSymbols, appendSymbols(b[:0], syms))
		st.Series += int64(len(views))
		written++
	}
	sw.section(secEnd, binary.AppendUvarint(b[:0], uint64(written)))
	st.Tenants = int64(written)
	st.Bytes = sw.n
	return st, sw.err
}

type seriesView struct {
	labels     model.Labels
	profiles   []Profile
	packed     []packedBlock
	aggs       []chunkAgg
	minT, maxT int64
}

type snapWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (sw *snapWriter) write(b []byte) {
	if sw.err != nil {
		return
	}
	var n int
	n, sw.err = sw.w.Write(b)
	sw.n += int64(n)
}

// section writes one section whose payload is parts, one after another.
func (sw *snapWriter) section(kind byte, parts ...[]byte) {
	var hdr [9]byte
	hdr[0] = kind
	size := 0
	for _, p := range parts {
		size += len(p)
	}
	binary.LittleEndian.PutUint64(hdr[1:], uint64(size))
	crc := crc32.Checksum(hdr[:], crcTable)
	sw.write(hdr[:])
	for _, p := range parts {
		crc = crc32.Update(crc, crcTable, p)
		sw.write(p)
	}
	var tail [4]byte
	binary.LittleEndian.PutUint32(tail[:], crc)
	sw.write(tail[:])
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendSeries(b []byte, s *seriesView) []byte {
	b = binary.AppendUvarint(b, uint64(len(s.labels)))
	for _, l := range s.labels {
		b = appendStr(b, l.Name)
		b = appendStr(b, l.Value)
	}
	b = binary.AppendVarint(b, s.minT)
	b = binary.AppendVarint(b, s.maxT)
	b = binary.AppendUvarint(b, uint64(len(s.profiles)))
	b = binary.AppendUvarint(b, uint64(len(s.packed)))
	packedRows := len(s.packed) * PackRows
	for i := range s.profiles {
		p := &s.profiles[i]
		b = append(b, p.ID[:]...)
		b = binary.AppendVarint(b, p.TimeNanos)
		b = binary.AppendVarint(b, p.Total)
		if i >= packedRows { // the rows of packed blocks have no samples of their own
			b = appendBytes(b, p.Samples)
		}
	}
	for i := range s.packed {
		blk := &s.packed[i]
		if blk.raw {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
		for _, e := range blk.ends {
			b = binary.AppendUvarint(b, uint64(e))
		}
		b = appendBytes(b, blk.data)
	}
	b = binary.AppendUvarint(b, uint64(len(s.aggs)))
	for _, a := range s.aggs {
		b = binary.LittleEndian.AppendUint64(b, a.digest)
		if a.samples == nil {
			b = append(b, 0)
		} else {
			b = append(b, 1)
			b = appendBytes(b, a.samples)
		}
	}
	return b
}

func appendSymbols(b []byte, sn *symdb.Snapshot) []byte {
	b = binary.AppendUvarint(b, uint64(len(sn.Strings)))
	for _, s := range sn.Strings {
		b = appendStr(b, s)
	}
	b = binary.AppendUvarint(b, uint64(len(sn.Mappings)))
	for _, m := range sn.Mappings {
		b = binary.AppendUvarint(b, m.MemoryStart)
		b = binary.AppendUvarint(b, m.MemoryLimit)
		b = binary.AppendUvarint(b, m.FileOffset)
		b = binary.AppendUvarint(b, uint64(m.Filename))
		b = binary.AppendUvarint(b, uint64(m.BuildID))
		b = append(b, byte(b2u(m.HasFunctions)|b2u(m.HasFilenames)<<1|b2u(m.HasLineNumbers)<<2|b2u(m.HasInlineFrames)<<3))
	}
	b = binary.AppendUvarint(b, uint64(len(sn.Functions)))
	for _, f := range sn.Functions {
		b = binary.AppendUvarint(b, uint64(f.Name))
		b = binary.AppendUvarint(b, uint64(f.SystemName))
		b = binary.AppendUvarint(b, uint64(f.Filename))
		b = binary.AppendVarint(b, f.StartLine)
	}
	b = binary.AppendUvarint(b, uint64(len(sn.Locations)))
	for _, l := range sn.Locations {
		b = binary.AppendUvarint(b, uint64(l.Mapping))
		b = binary.AppendUvarint(b, l.Address)
		b = append(b, byte(b2u(l.IsFolded)))
		b = binary.AppendUvarint(b, uint64(len(l.Lines)))
		for _, ln := range l.Lines {
			b = binary.AppendUvarint(b, uint64(ln.Function))
			b = binary.AppendVarint(b, ln.Line)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(sn.Nodes)))
	for _, n := range sn.Nodes {
		b = binary.AppendUvarint(b, uint64(n.Parent))
		b = binary.AppendUvarint(b, uint64(n.Location))
	}
	return b
}

func b2u(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// ReadSnapshot reads a snapshot of size bytes from r into a new head with
// opts. Any damage (a bad CRC, a file cut short, a reference out of range)
// is an error and no head: the caller replays the WAL instead.
func ReadSnapshot(r io.Reader, size int64, opts Options) (*Head, SnapshotMeta, SnapshotStats, error) {
	sr := &snapReader{r: bufio.NewReaderSize(r, 1<<20), left: size}
	var meta SnapshotMeta
	var st SnapshotStats
	var hdr [16]byte
	if err := sr.read(hdr[:]); err != nil {
		return nil, meta, st, fmt.Errorf("head snapshot header: %w", err)
	}
	if string(hdr[:8]) != snapshotMagic {
		return nil, meta, st, errors.New("not a head snapshot (no magic)")
	}
	if crc32.Checksum(hdr[:12], crcTable) != binary.LittleEndian.Uint32(hdr[12:]) {
		return nil, meta, st, errors.New("head snapshot header: CRC mismatch")
	}
	if v := binary.LittleEndian.Uint32(hdr[8:]); v != SnapshotVersion {
		return nil, meta, st, fmt.Errorf("%w: version %d (this release reads %d)", ErrSnapshotVersion, v, SnapshotVersion)
	}
	p, err := sr.section(secMeta)
	if err != nil {
		return nil, meta, st, err
	}
	d := &dec{b: p}
	meta.WALSegment, meta.HeadStart, meta.CreatedNano = d.uvarint(), d.uvarint(), d.varint()
	if err := d.done("meta"); err != nil {
		return nil, meta, st, err
	}
	h := New(opts)
	for {
		kind, p, err := sr.next()
		if err != nil {
			return nil, meta, st, err
		}
		d := &dec{b: p}
		switch kind {
		case secEnd:
			n := d.uvarint()
			if err := d.done("end"); err != nil {
				return nil, meta, st, err
			}
			if n != uint64(st.Tenants) {
				return nil, meta, st, fmt.Errorf("head snapshot: %d tenants, the end says %d", st.Tenants, n)
			}
			if sr.left != 0 {
				return nil, meta, st, fmt.Errorf("head snapshot: %d bytes after the end", sr.left)
			}
			st.Bytes = size
			return h, meta, st, nil
		case secTenant:
			t, err := sr.tenant(d, h.opts.Metrics)
			if err != nil {
				return nil, meta, st, err
			}
			if h.tenants[t.name] != nil {
				return nil, meta, st, fmt.Errorf("head snapshot: tenant %q twice", t.name)
			}
			h.tenants[t.name] = t
			st.Tenants++
			st.Series += int64(len(t.series))
			st.Rows += t.profiles
		default:
			return nil, meta, st, fmt.Errorf("head snapshot: section %d where a tenant or the end belongs", kind)
		}
	}
}

type snapReader struct {
	r    *bufio.Reader
	left int64 // bytes not read yet
}

func (sr *snapReader) read(b []byte) error {
	if int64(len(b)) > sr.left {
		return io.ErrUnexpectedEOF
	}
	if _, err := io.ReadFull(sr.r, b); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	sr.left -= int64(len(b))
	return nil
}

// next reads a section and checks its CRC.
func (sr *snapReader) next() (byte, []byte, error) {
	var hdr [9]byte
	if err := sr.read(hdr[:]); err != nil {
		return 0, nil, fmt.Errorf("head snapshot: section header: %w", err)
	}
	n := binary.LittleEndian.Uint64(hdr[1:])
	if n > uint64(sr.left) || n > math.MaxInt {
		return 0, nil, fmt.Errorf("head snapshot: a section of %d bytes, the file has %d left", n, sr.left)
	}
	p := make([]byte, n+4)
	if err := sr.read(p); err != nil {
		return 0, nil, fmt.Errorf("head snapshot: section: %w", err)
	}
	crc := crc32.Update(crc32.Checksum(hdr[:], crcTable), crcTable, p[:n])
	if crc != binary.LittleEndian.Uint32(p[n:]) {
		return 0, nil, fmt.Errorf("head snapshot: section %d: CRC mismatch", hdr[0])
	}
	return hdr[0], p[:n:n], nil
}

// section reads the next section, which must be of kind.
func (sr *snapReader) section(kind byte) ([]byte, error) {
	k, p, err := sr.next()
	if err != nil {
		return nil, err
	}
	if k != kind {
		return nil, fmt.Errorf("head snapshot: section %d where %d belongs", k, kind)
	}
	return p, nil
}

// tenant reads a tenant's sections, its header's payload in d.
func (sr *snapReader) tenant(d *dec, m *Metrics) (*Tenant, error) {
	t := &Tenant{
		name: d.str(), byHash: map[uint64]*series{},
		byType: map[string][]uint32{}, strs: map[string]string{}, bigRows: map[rowKey]struct{}{},
	}
	t.minT, t.maxT = d.varint(), d.varint()
	t.profiles, t.samples = int64(d.uvarint()), int64(d.uvarint())
	nseries := d.uvarint()
	if err := d.done("tenant"); err != nil {
		return nil, err
	}
	if nseries > uint64(sr.left) {
		return nil, fmt.Errorf("head snapshot tenant %q: %d series in %d bytes", t.name, nseries, sr.left)
	}
	t.series = make([]*series, 0, nseries)
	var bytes int64
	var rows int64
	for uint64(len(t.series)) < nseries {
		p, err := sr.section(secSeries)
		if err != nil {
			return nil, fmt.Errorf("tenant %q: %w", t.name, err)
		}
		d := &dec{b: p}
		n := d.count()
		for range n {
			s, b := t.readSeries(d)
			if d.err != nil {
				break
			}
			bytes += b
			rows += int64(len(s.profiles))
		}
		if err := d.done("series"); err != nil {
			return nil, fmt.Errorf("tenant %q: %w", t.name, err)
		}
		if uint64(len(t.series)) > nseries {
			return nil, fmt.Errorf("head snapshot tenant %q: more series than %d", t.name, nseries)
		}
	}
	if rows != t.profiles {
		return nil, fmt.Errorf("head snapshot tenant %q: %d rows, the tenant says %d", t.name, rows, t.profiles)
	}
	p, err := sr.section(secSymbols)
	if err != nil {
		return nil, fmt.Errorf("tenant %q: %w", t.name, err)
	}
	sn, err := readSymbols(&dec{b: p})
	if err != nil {
		return nil, fmt.Errorf("head snapshot tenant %q: %w", t.name, err)
	}
	if t.syms, err = symdb.Restore(sn); err != nil {
		return nil, fmt.Errorf("head snapshot tenant %q: %w", t.name, err)
	}
	t.rowBytes.Store(bytes)
	t.finishRestore()
	if m != nil {
		m.bytesGauge.WithLabelValues(t.name).Set(float64(t.Bytes()))
		m.seriesGauge.WithLabelValues(t.name).Set(float64(len(t.series)))
		m.profilesGauge.WithLabelValues(t.name).Set(float64(t.profiles))
	}
	return t, nil
}

// readSeries adds the next series of d to t; it returns it and its bytes
// (as Commit counts them). Row samples, packed blocks and aggregates alias
// d's buffer, which lives as long as they do.
func (t *Tenant) readSeries(d *dec) (*series, int64) {
	nl := d.count()
	ls := make(model.Labels, nl) // aliases the payload: addSeries keeps interned copies
	for i := range ls {
		ls[i].Name, ls[i].Value = d.strAlias(), d.strAlias()
	}
	minT, maxT := d.varint(), d.varint()
	nrows, npacked := d.count(), d.count()
	if d.err != nil {
		return nil, 0
	}
	if npacked*PackRows > nrows {
		d.fail("%d packed blocks for %d rows", npacked, nrows)
		return nil, 0
	}
	hash := ls.Hash()
	if t.lookup(ls, hash) != nil {
		d.fail("series %v twice", ls)
		return nil, 0
	}
	s, bytes := t.addSeries(ls, hash)
	s.minT, s.maxT = minT, maxT
	s.profiles = make([]Profile, nrows, nrows+PackRows)
	for i := range s.profiles {
		p := &s.profiles[i]
		copy(p.ID[:], d.bytesN(16))
		p.TimeNanos, p.Total = d.varint(), d.varint()
		if i >= npacked*PackRows {
			p.Samples = d.bytes()
			bytes += int64(len(p.Samples)) + rowBytes
		} else {
			bytes += rowBytes
		}
	}
	s.packed = make([]packedBlock, npacked)
	for i := range s.packed {
		blk := &s.packed[i]
		blk.raw = d.byte() == 1
		prev := uint64(0)
		for j := range blk.ends {
			e := d.uvarint()
			if e < prev || e > math.MaxUint32 {
				d.fail("packed block ends out of order")
			}
			blk.ends[j], prev = uint32(e), e
		}
		blk.data = d.bytes()
		if blk.raw && uint64(len(blk.data)) != prev {
			d.fail("a raw packed block of %d bytes ends at %d", len(blk.data), prev)
		}
		bytes += int64(len(blk.data)) + packedBlockOverhead
	}
	naggs := d.count()
	if naggs > nrows/AggregateRows {
		d.fail("%d aggregates for %d rows", naggs, nrows)
		return nil, 0
	}
	s.aggs = make([]chunkAgg, naggs)
	for i := range s.aggs {
		s.aggs[i].digest = binary.LittleEndian.Uint64(d.bytesN(8))
		if d.byte() == 1 {
			s.aggs[i].samples = d.bytes()
			bytes += int64(len(s.aggs[i].samples))
		}
		bytes += 32
	}
	if len(s.profiles) > dedupScanRows { // hasRow asks the map (addedRow)
		for i := range s.profiles {
			t.bigRows[rowKey{id: s.profiles[i].ID, ref: s.ref}] = struct{}{}
		}
		bytes += int64(len(s.profiles)) * bigRowKeyBytes
	}
	return s, bytes
}

// finishRestore packs the full blocks and merges the full chunks that a
// snapshot caught before the pushes that filled them had done so.
func (t *Tenant) finishRestore() {
	var packs []*series
	for _, s := range t.series {
		if len(s.profiles) >= (len(s.packed)+1)*PackRows {
			s.packing = true
			packs = append(packs, s)
		}
	}
	var added int64
	if len(packs) > 0 {
		added += t.pack(packs)
	}
	var jobs []chunkJob
	for _, s := range t.series {
		for k := 0; (k+1)*AggregateRows <= len(s.profiles); k++ {
			if k >= len(s.aggs) || (s.aggs[k].digest == 0 && s.aggs[k].samples == nil) {
				jobs = append(jobs, chunkJob{s: s, k: k, all: s.profiles, packed: s.packed})
			}
		}
	}
	if len(jobs) > 0 {
		added += t.aggregate(jobs)
	}
	t.rowBytes.Add(added)
}

func readSymbols(d *dec) (*symdb.Snapshot, error) {
	sn := &symdb.Snapshot{}
	sn.Strings = make([]string, d.count())
	for i := range sn.Strings {
		sn.Strings[i] = d.str()
	}
	sn.Mappings = make([]symdb.Mapping, d.count())
	for i := range sn.Mappings {
		m := &sn.Mappings[i]
		m.MemoryStart, m.MemoryLimit, m.FileOffset = d.uvarint(), d.uvarint(), d.uvarint()
		m.Filename, m.BuildID = d.u32(), d.u32()
		f := d.byte()
		m.HasFunctions, m.HasFilenames, m.HasLineNumbers, m.HasInlineFrames = f&1 != 0, f&2 != 0, f&4 != 0, f&8 != 0
	}
	sn.Functions = make([]symdb.Function, d.count())
	for i := range sn.Functions {
		f := &sn.Functions[i]
		f.Name, f.SystemName, f.Filename, f.StartLine = d.u32(), d.u32(), d.u32(), d.varint()
	}
	sn.Locations = make([]symdb.Location, d.count())
	for i := range sn.Locations {
		l := &sn.Locations[i]
		l.Mapping, l.Address, l.IsFolded = d.u32(), d.uvarint(), d.byte() == 1
		if n := d.count(); n > 0 {
			l.Lines = make([]symdb.Line, n)
			for j := range l.Lines {
				l.Lines[j] = symdb.Line{Function: d.u32(), Line: d.varint()}
			}
		}
	}
	sn.Nodes = make([]symdb.Node, d.count())
	for i := range sn.Nodes {
		sn.Nodes[i] = symdb.Node{Parent: d.u32(), Location: d.u32()}
	}
	return sn, d.done("symbols")
}

// dec reads a section's payload; the first error sticks and every read
// after it returns zero values.
type dec struct {
	b   []byte
	off int
	err error
}

func (d *dec) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, args...)
	}
}

func (d *dec) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail("bad uvarint at %d", d.off)
		return 0
	}
	d.off += n
	return v
}

func (d *dec) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		d.fail("bad varint at %d", d.off)
		return 0
	}
	d.off += n
	return v
}

func (d *dec) u32() uint32 {
	v := d.uvarint()
	if v > math.MaxUint32 {
		d.fail("%d out of range", v)
		return 0
	}
	return uint32(v)
}

// count reads a number of items, each of which takes at least one byte.
func (d *dec) count() int {
	v := d.uvarint()
	if v > uint64(len(d.b)-d.off) {
		d.fail("%d items in %d bytes", v, len(d.b)-d.off)
		return 0
	}
	return int(v)
}

func (d *dec) byte() byte {
	b := d.bytesN(1)
	if b == nil {
		return 0
	}
	return b[0]
}

// bytesN returns the next n bytes (nil after an error).
func (d *dec) bytesN(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.b)-d.off {
		d.fail("%d bytes at %d, %d left", n, d.off, len(d.b)-d.off)
		return nil
	}
	b := d.b[d.off : d.off+n : d.off+n]
	d.off += n
	return b
}

// bytes reads a length-prefixed byte string, aliasing the payload.
func (d *dec) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)-d.off) {
		d.fail("%d bytes at %d, %d left", n, d.off, len(d.b)-d.off)
		return nil
	}
	return d.bytesN(int(n))
}

// str reads a length-prefixed string (a copy).
func (d *dec) str() string { return string(d.bytes()) }

// strAlias reads a length-prefixed string without copying it, for a lookup
// (intern copies what it keeps).
func (d *dec) strAlias() string {
	b := d.bytes()
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// done checks the payload was read to its end without error.
func (d *dec) done(what string) error {
	if d.err == nil && d.off != len(d.b) {
		d.fail("%d bytes left", len(d.b)-d.off)
	}
	if d.err != nil {
		return fmt.Errorf("head snapshot %s section: %w", what, d.err)
	}
	return nil
}
