package block

import (
	"bufio"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/oklog/ulid/v2"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"

	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/symdb"
	"github.com/hearth-dev/hearth/internal/durable"
)

// MergeOptions say what Merge writes.
type MergeOptions struct {
	Tenant string    // required
	Source string    // into meta.json
	ULID   ulid.ULID // zero: a new one
	// Compaction is written into meta.json; rows outside [RangeStart, RangeEnd) are dropped.
	Compaction Compaction
	// Row groups and compression as in WriteOptions.
	RowGroupRows  int
	RowGroupBytes int
	Compression   compress.Codec
}

// MergeStats count what Merge read and wrote.
type MergeStats struct {
	InputRows  int64 // rows read from the inputs (in range)
	OutputRows int64 // rows written
	Duplicates int64 // rows dropped because another input had the same (series, profile id)
	OutOfRange int64 // rows of the inputs outside the range
}

// Merge writes one block, dir/<ULID>/, holding every row of the inputs whose
// time is in the compaction range, each (series, profile id) once, with the
// inputs' symbols merged and deduplicated, laid out as Write lays out a block
// (series sorted by labels, rows by time then id). It streams: it holds the
// inputs' and the output's symbol tables and one series' rows at a time. The
// block is assembled in dir/<ULID>.tmp and renamed when complete. Unlike
// Write, an output without rows is written too (a range none of whose rows
// survived still needs a block that says it was compacted).
func Merge(ctx context.Context, dir string, inputs []*Reader, opts MergeOptions) (Meta, MergeStats, error) {
	var st MergeStats
	if opts.Tenant == "" {
		return Meta{}, st, errors.New("block: MergeOptions.Tenant is required")
	}
	c := opts.Compaction
	if c.RangeStart >= c.RangeEnd || c.Level < 1 {
		return Meta{}, st, fmt.Errorf("block: merge range [%d, %d) at level %d", c.RangeStart, c.RangeEnd, c.Level)
	}
	if opts.ULID == (ulid.ULID{}) {
		opts.ULID = ulid.Make()
	}
	if opts.RowGroupRows <= 0 {
		opts.RowGroupRows = defaultRowGroupRows
	}
	if opts.RowGroupBytes <= 0 {
		opts.RowGroupBytes = defaultRowGroupBytes
	}
	if opts.Compression == nil {
		opts.Compression = &parquet.Zstd
	}
	inRange := func(t int64) bool { return t >= c.RangeStart && t < c.RangeEnd }

	// Symbols: the inputs' tables merged, keeping only what rows in range use.
	sm := newSymMerger()
	nodeMaps := make([][]uint32, len(inputs))
	for i, r := range inputs {
		sn, err := r.Symbols(ctx)
		if err != nil {
			return Meta{}, st, err
		}
		var used []bool
		if m := r.Meta(); m.MinTime < c.RangeStart || m.MaxTime >= c.RangeEnd {
			// Some rows fall outside: find the stacks of those inside.
			used = make([]bool, len(sn.Nodes))
			err := r.scanRows(ctx, func(_ int, row *profileRow) error {
				if !inRange(row.Time) {
					return nil
				}
				return head.DecodeSamples(row.Samples, func(s uint32, _ int64) {
					if int(s) < len(used) {
						used[s] = true
					}
				})
			})
			if err != nil {
				return Meta{}, st, err
			}
		}
		nodeMaps[i] = sm.add(sn, used)
	}

	// Series: the union of the inputs' series, in label order. Each input's
	// series are in label order too, so its rows are read front to back.
	type member struct{ input, series int }
	type group struct {
		labels  model.Labels
		members []member
	}
	var all []member
	for i, r := range inputs {
		for s := range r.Series() {
			all = append(all, member{i, s})
		}
	}
	lbl := func(m member) model.Labels { return inputs[m.input].series[m.series].Labels }
	slices.SortStableFunc(all, func(a, b member) int {
		if c := compareLabels(lbl(a), lbl(b)); c != 0 {
			return c
		}
		return cmp.Compare(a.input, b.input)
	})
	var groups []group
	for _, m := range all {
		if n := len(groups); n > 0 && compareLabels(groups[n-1].labels, lbl(m)) == 0 {
			groups[n-1].members = append(groups[n-1].members, m)
			continue
		}
		groups = append(groups, group{labels: lbl(m), members: []member{m}})
	}

	final := filepath.Join(dir, opts.ULID.String())
	tmp := final + ".tmp"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Meta{}, st, err
	}
	if err := os.RemoveAll(tmp); err != nil {
		return Meta{}, st, err
	}
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return Meta{}, st, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(tmp)
		}
	}()

	sink, err := newProfileSink(filepath.Join(tmp, ProfilesFile), opts.RowGroupRows, opts.RowGroupBytes, opts.Compression)
	if err != nil {
		return Meta{}, st, err
	}
	defer sink.abort()
	cursors := make([]*rowCursor, len(inputs))
	for i, r := range inputs {
		cur, err := r.cursor()
		if err != nil {
			return Meta{}, st, err
		}
		cursors[i] = cur
	}
	defer func() {
		for _, cur := range cursors {
			cur.close()
		}
	}()

	meta := Meta{Version: FormatVersion, ULID: opts.ULID, Tenant: opts.Tenant, Source: opts.Source}
	meta.MinTime, meta.MaxTime = 1<<63-1, -1<<63
	type taggedRow struct {
		head.Profile
		input int
	}
	var (
		series  []Series
		rows    []taggedRow
		seen    = map[head.ProfileID]struct{}{}
		firstRw int64
	)
	for _, g := range groups {
		if err := ctx.Err(); err != nil {
			return Meta{}, st, err
		}
		rows = rows[:0]
		for _, m := range g.members {
			want := inputs[m.input].series[m.series].Rows
			err := cursors[m.input].read(want, func(row *profileRow) error {
				if int(row.Series) != m.series {
					return fmt.Errorf("block %s: %w: row of series %d where the index puts series %d", inputs[m.input].prefix, ErrCorrupt, row.Series, m.series)
				}
				if !inRange(row.Time) {
					st.OutOfRange++
					return nil
				}
				st.InputRows++
				samples, err := remapSamples(row.Samples, nodeMaps[m.input])
				if err != nil {
					return fmt.Errorf("block %s: %w", inputs[m.input].prefix, err)
				}
				rows = append(rows, taggedRow{Profile: head.Profile{ID: row.ID, TimeNanos: row.Time, Total: row.Total, Samples: samples}, input: m.input})
				return nil
			})
			if err != nil {
				return Meta{}, st, err
			}
		}
		// Deterministic: the first copy of a profile by (time, id, input) is kept.
		slices.SortFunc(rows, func(a, b taggedRow) int {
			if c := cmp.Compare(a.TimeNanos, b.TimeNanos); c != 0 {
				return c
			}
			if c := slices.Compare(a.ID[:], b.ID[:]); c != 0 {
				return c
			}
			return cmp.Compare(a.input, b.input)
		})
		clear(seen)
		s := Series{Labels: g.labels, FirstRow: firstRw}
		for i := range rows {
			r := &rows[i]
			if _, dup := seen[r.ID]; dup {
				st.Duplicates++
				continue
			}
			seen[r.ID] = struct{}{}
			n, _ := binary.Uvarint(r.Samples)
			meta.Stats.Samples += int64(n)
			if err := sink.add(profileRow{Series: int32(len(series)), Time: r.TimeNanos, ID: r.ID, Total: r.Total, Samples: r.Samples}); err != nil {
				return Meta{}, st, err
			}
			if s.Rows == 0 {
				s.MinTime = r.TimeNanos
			}
			s.MaxTime = r.TimeNanos
			s.Rows++
		}
		if s.Rows == 0 {
			continue
		}
		firstRw += s.Rows
		meta.MinTime, meta.MaxTime = min(meta.MinTime, s.MinTime), max(meta.MaxTime, s.MaxTime)
		series = append(series, s)
	}
	for i, cur := range cursors {
		if cur.left() != 0 {
			return Meta{}, st, fmt.Errorf("block %s: %w: %d rows beyond the index", inputs[i].prefix, ErrCorrupt, cur.left())
		}
	}
	st.OutputRows = firstRw
	meta.Stats.Series, meta.Stats.Profiles = int64(len(series)), firstRw
	if firstRw == 0 {
		meta.MinTime, meta.MaxTime = c.RangeStart, c.RangeStart
	}
	n, err := sink.close()
	if err != nil {
		return Meta{}, st, err
	}
	cc := c
	cc.Sources = slices.Clone(c.Sources)
	slices.SortFunc(cc.Sources, func(a, b ulid.ULID) int { return a.Compare(b) })
	cc.Sources = slices.Compact(cc.Sources)
	meta.Compaction = &cc

	meta.Files = append(meta.Files, File{Name: ProfilesFile, Size: n})
	symBytes := encodeSymbols(sm.snapshot())
	if err := writeFileSync(filepath.Join(tmp, SymbolsFile), symBytes); err != nil {
		return Meta{}, st, err
	}
	meta.Files = append(meta.Files, File{Name: SymbolsFile, Size: int64(len(symBytes))})
	idx := encodeIndex(series)
	if err := writeFileSync(filepath.Join(tmp, IndexFile), idx); err != nil {
		return Meta{}, st, err
	}
	meta.Files = append(meta.Files, File{Name: IndexFile, Size: int64(len(idx))})
	slices.SortFunc(meta.Files, func(a, b File) int { return cmp.Compare(a.Name, b.Name) })
	if err := meta.validate(); err != nil {
		return Meta{}, st, fmt.Errorf("block: merged meta: %w", err)
	}
	mb, err := MarshalMeta(&meta)
	if err != nil {
		return Meta{}, st, err
	}
	if err := writeFileSync(filepath.Join(tmp, MetaFile), mb); err != nil {
		return Meta{}, st, err
	}
	if err := durable.SyncDir(tmp); err != nil {
		return Meta{}, st, err
	}
	if err := os.RemoveAll(final); err != nil {
		return Meta{}, st, err
	}
	if err := os.Rename(tmp, final); err != nil {
		return Meta{}, st, err
	}
	ok = true
	return meta, st, durable.SyncDir(dir)
}

// remapSamples re-encodes a row's samples (span samples included) with its
// stacks renumbered by nm.
func remapSamples(b []byte, nm []uint32) ([]byte, error) {
	var bad error
	enc, err := head.RemapSamples(make([]byte, 0, len(b)+8), b, func(sid uint32) uint32 {
		if int(sid) >= len(nm) {
			bad = fmt.Errorf("%w: stack %d beyond its %d symbols", ErrCorrupt, sid, len(nm))
			return 0
		}
		return nm[sid]
	})
	if err == nil {
		err = bad
	}
	return enc, err
}

// profileSink writes profiles.parquet row by row, cutting row groups as Write does.
type profileSink struct {
	f        *os.File
	bw       *bufio.Writer
	w        *parquet.GenericWriter[profileRow]
	batch    []profileRow
	rows     int
	bytes    int
	maxRows  int
	maxBytes int
	closed   bool
}

func newProfileSink(path string, maxRows, maxBytes int, codec compress.Codec) (*profileSink, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	w := parquet.NewGenericWriter[profileRow](bw,
		parquet.Compression(codec),
		parquet.PageBufferSize(256<<10),
		parquet.MaxRowsPerRowGroup(int64(maxRows)),
		parquet.SkipPageBounds("samples"),
		parquet.SkipPageBounds("id"),
		parquet.KeyValueMetadata("hearth.format_version", fmt.Sprint(FormatVersion)),
	)
	return &profileSink{f: f, bw: bw, w: w, batch: make([]profileRow, 0, 256), maxRows: maxRows, maxBytes: maxBytes}, nil
}

func (s *profileSink) flushBatch() error {
	if len(s.batch) == 0 {
		return nil
	}
	_, err := s.w.Write(s.batch)
	clear(s.batch)
	s.batch = s.batch[:0]
	return err
}

func (s *profileSink) add(r profileRow) error {
	s.batch = append(s.batch, r)
	s.rows++
	s.bytes += len(r.Samples)
	if len(s.batch) == cap(s.batch) {
		if err := s.flushBatch(); err != nil {
			return err
		}
	}
	if s.rows >= s.maxRows || s.bytes >= s.maxBytes {
		if err := s.flushBatch(); err != nil {
			return err
		}
		if err := s.w.Flush(); err != nil {
			return err
		}
		s.rows, s.bytes = 0, 0
	}
	return nil
}

// close finishes the file, syncs it and returns its size.
func (s *profileSink) close() (int64, error) {
	s.closed = true
	defer s.f.Close()
	if err := s.flushBatch(); err != nil {
		return 0, err
	}
	if err := s.w.Close(); err != nil {
		return 0, err
	}
	if err := s.bw.Flush(); err != nil {
		return 0, err
	}
	if err := s.f.Sync(); err != nil {
		return 0, err
	}
	fi, err := s.f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), s.f.Close()
}

func (s *profileSink) abort() {
	if !s.closed {
		_ = s.f.Close()
	}
}

// rowCursor reads a block's profiles.parquet front to back.
type rowCursor struct {
	r    *Reader
	rgs  []parquet.RowGroup
	g    int
	rd   *parquet.GenericReader[profileRow]
	buf  []profileRow
	pos  int
	n    int
	rest int64
}

func (r *Reader) cursor() (*rowCursor, error) {
	if r.meta.Stats.Profiles == 0 {
		return &rowCursor{r: r}, nil
	}
	f, err := r.openProfiles()
	if err != nil {
		return nil, err
	}
	return &rowCursor{r: r, rgs: f.RowGroups(), buf: make([]profileRow, 256), rest: f.NumRows()}, nil
}

func (c *rowCursor) left() int64 { return c.rest }

// read calls fn for the next n rows.
func (c *rowCursor) read(n int64, fn func(*profileRow) error) (err error) {
	defer func() {
		if p := recover(); p != nil { // a damaged file must not take the process down
			err = fmt.Errorf("block %s: %w: reading profiles: %v", c.r.prefix, ErrCorrupt, p)
		}
	}()
	for ; n > 0; n-- {
		for c.pos == c.n {
			if err := c.fill(); err != nil {
				return err
			}
		}
		c.rest--
		if err := fn(&c.buf[c.pos]); err != nil {
			return err
		}
		c.pos++
	}
	return nil
}

func (c *rowCursor) fill() error {
	for {
		if c.rd == nil {
			if c.g >= len(c.rgs) {
				return fmt.Errorf("block %s: %w: fewer rows than the index says", c.r.prefix, ErrCorrupt)
			}
			c.rd = parquet.NewGenericRowGroupReader[profileRow](c.rgs[c.g])
			c.g++
		}
		k, err := c.rd.Read(c.buf)
		if k > 0 {
			c.pos, c.n = 0, k
			return nil
		}
		if err == nil {
			continue
		}
		_ = c.rd.Close()
		c.rd = nil
	}
}

func (c *rowCursor) close() {
	if c.rd != nil {
		_ = c.rd.Close()
		c.rd = nil
	}
}

// scanRows calls fn for every row of the block, in file order.
func (r *Reader) scanRows(_ context.Context, fn func(series int, row *profileRow) error) error {
	cur, err := r.cursor()
	if err != nil {
		return err
	}
	defer cur.close()
	return cur.read(cur.left(), func(row *profileRow) error { return fn(int(row.Series), row) })
}

// symMerger builds one symbol table from several, content-deduplicated.
type symMerger struct {
	out   symdb.Snapshot
	strs  map[string]uint32
	maps  map[symdb.Mapping]uint32
	fns   map[symdb.Function]uint32
	locs  map[string]uint32
	nodes map[uint64]uint32
	key   []byte
}

func newSymMerger() *symMerger {
	return &symMerger{
		out: symdb.Snapshot{Strings: []string{""}, Mappings: []symdb.Mapping{{}}, Functions: []symdb.Function{{}},
			Locations: []symdb.Location{{}}, Nodes: []symdb.Node{{}}},
		strs: map[string]uint32{"": 0}, maps: map[symdb.Mapping]uint32{{}: 0}, fns: map[symdb.Function]uint32{{}: 0},
		locs: map[string]uint32{}, nodes: map[uint64]uint32{},
	}
}

func (m *symMerger) snapshot() *symdb.Snapshot { return &m.out }

// add merges sn's nodes (only those used and their ancestors when used is
// not nil) and returns the node id map (0 for nodes not merged).
func (m *symMerger) add(sn *symdb.Snapshot, used []bool) []uint32 {
	nodeMap := make([]uint32, len(sn.Nodes))
	if used != nil {
		for i := len(sn.Nodes) - 1; i > 0; i-- {
			if used[i] && int(sn.Nodes[i].Parent) < len(used) {
				used[sn.Nodes[i].Parent] = true
			}
		}
	}
	strMap := make([]int64, len(sn.Strings)) // 0: not yet; else id+1
	str := func(i uint32) uint32 {
		if int(i) >= len(sn.Strings) {
			return 0
		}
		if v := strMap[i]; v != 0 {
			return uint32(v - 1)
		}
		s := sn.Strings[i]
		id, ok := m.strs[s]
		if !ok {
			id = uint32(len(m.out.Strings))
			m.out.Strings = append(m.out.Strings, s)
			m.strs[s] = id
		}
		strMap[i] = int64(id) + 1
		return id
	}
	mapMap := make([]int64, len(sn.Mappings))
	mapping := func(i uint32) uint32 {
		if i == 0 || int(i) >= len(sn.Mappings) {
			return 0
		}
		if v := mapMap[i]; v != 0 {
			return uint32(v - 1)
		}
		mp := sn.Mappings[i]
		mp.Filename, mp.BuildID = str(mp.Filename), str(mp.BuildID)
		id, ok := m.maps[mp]
		if !ok {
			id = uint32(len(m.out.Mappings))
			m.out.Mappings = append(m.out.Mappings, mp)
			m.maps[mp] = id
		}
		mapMap[i] = int64(id) + 1
		return id
	}
	fnMap := make([]int64, len(sn.Functions))
	function := func(i uint32) uint32 {
		if i == 0 || int(i) >= len(sn.Functions) {
			return 0
		}
		if v := fnMap[i]; v != 0 {
			return uint32(v - 1)
		}
		f := sn.Functions[i]
		f.Name, f.SystemName, f.Filename = str(f.Name), str(f.SystemName), str(f.Filename)
		id, ok := m.fns[f]
		if !ok {
			id = uint32(len(m.out.Functions))
			m.out.Functions = append(m.out.Functions, f)
			m.fns[f] = id
		}
		fnMap[i] = int64(id) + 1
		return id
	}
	locMap := make([]int64, len(sn.Locations))
	location := func(i uint32) uint32 {
		if i == 0 || int(i) >= len(sn.Locations) {
			return 0
		}
		if v := locMap[i]; v != 0 {
			return uint32(v - 1)
		}
		l := sn.Locations[i]
		nl := symdb.Location{Mapping: mapping(l.Mapping), Address: l.Address, IsFolded: l.IsFolded, Lines: make([]symdb.Line, len(l.Lines))}
		k := m.key[:0]
		k = binary.AppendUvarint(k, uint64(nl.Mapping))
		k = binary.AppendUvarint(k, nl.Address)
		k = append(k, b2byte(nl.IsFolded))
		for j, ln := range l.Lines {
			nl.Lines[j] = symdb.Line{Function: function(ln.Function), Line: ln.Line}
			k = binary.AppendUvarint(k, uint64(nl.Lines[j].Function))
			k = binary.AppendVarint(k, ln.Line)
		}
		m.key = k
		id, ok := m.locs[string(k)]
		if !ok {
			id = uint32(len(m.out.Locations))
			m.out.Locations = append(m.out.Locations, nl)
			m.locs[string(k)] = id
		}
		locMap[i] = int64(id) + 1
		return id
	}
	for i := 1; i < len(sn.Nodes); i++ {
		if used != nil && !used[i] {
			continue
		}
		n := sn.Nodes[i]
		parent := uint32(0)
		if int(n.Parent) < i {
			parent = nodeMap[n.Parent]
		}
		loc := location(n.Location)
		k := uint64(parent)<<32 | uint64(loc)
		id, ok := m.nodes[k]
		if !ok {
			id = uint32(len(m.out.Nodes))
			m.out.Nodes = append(m.out.Nodes, symdb.Node{Parent: parent, Location: loc})
			m.nodes[k] = id
		}
		nodeMap[i] = id
	}
	return nodeMap
}

func b2byte(v bool) byte {
	if v {
		return 1
	}
	return 0
}
