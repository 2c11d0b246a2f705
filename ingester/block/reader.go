package block

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"sync"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/thanos-io/objstore"

	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/querylimit"
	"github.com/hearth-dev/hearth/ingester/symdb"
)

// ReaderOptions tune Open.
type ReaderOptions struct {
	// Meta, when set, is used instead of reading meta.json again.
	Meta *Meta
	// Symbols caches decoded symbol tables; nil: the reader keeps its own
	// table once loaded.
	Symbols *SymbolCache
	// ReadBufferSize is parquet-go's read buffer per column (0: 256 KiB). A
	// merge of many local blocks uses a small one: it holds one per input.
	ReadBufferSize int
}

// Reader reads one block from a bucket. It is safe for concurrent use and
// holds no file handles: dropping it is closing it.
type Reader struct {
	bkt    objstore.BucketReader
	prefix string
	meta   Meta
	series []Series
	syms   *SymbolCache
	rbuf   int

	fileOnce sync.Mutex
	file     *parquet.File
	pf       *bucketFile
	rgFirst  []int64 // first row of each row group, plus the total at the end
	rgTime   [][2]int64
	timeCol  int
}

// Open reads meta.json (unless given) and index.bin of the block under
// prefix ("<tenant>/<ulid>/" or "<ulid>/"). profiles.parquet and symbols.bin
// are read when a Select needs them.
func Open(ctx context.Context, bkt objstore.BucketReader, prefix string, opts ReaderOptions) (*Reader, error) {
	r := &Reader{bkt: bkt, prefix: prefix, syms: opts.Symbols, rbuf: opts.ReadBufferSize}
	if r.rbuf <= 0 {
		r.rbuf = 256 << 10
	}
	if opts.Meta != nil {
		r.meta = *opts.Meta
	} else {
		b, err := readAll(ctx, bkt, path.Join(prefix, MetaFile))
		if err != nil {
			return nil, err
		}
		m, err := ParseMeta(b)
		if err != nil {
			return nil, fmt.Errorf("block %s: %w", prefix, err)
		}
		r.meta = *m
	}
	if r.syms == nil {
		r.syms = NewSymbolCache(1 << 62)
	}
	b, err := readAll(ctx, bkt, path.Join(prefix, IndexFile))
	if err != nil {
		return nil, err
	}
	if r.series, err = DecodeIndex(b); err != nil {
		return nil, fmt.Errorf("block %s: %w", prefix, err)
	}
	var rows int64
	for _, s := range r.series {
		rows += s.Rows
	}
	if rows != r.meta.Stats.Profiles || int64(len(r.series)) != r.meta.Stats.Series {
		return nil, fmt.Errorf("block %s: %w: index has %d series and %d rows, meta.json says %d and %d",
			prefix, ErrCorrupt, len(r.series), rows, r.meta.Stats.Series, r.meta.Stats.Profiles)
	}
	return r, nil
}

// Meta returns the block's meta.json.
func (r *Reader) Meta() Meta { return r.meta }

// Series returns the block's series index (read-only).
func (r *Reader) Series() []Series { return r.series }

// readLimited reads at most limit bytes of an object (a larger one is
// refused by its parser without holding more than that).
func readLimited(ctx context.Context, bkt objstore.BucketReader, name string, limit int64) ([]byte, error) {
	var b []byte
	err := withRetries(ctx, bkt, func() error {
		rc, err := bkt.Get(ctx, name)
		if err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
		defer rc.Close()
		b, err = io.ReadAll(io.LimitReader(rc, limit))
		if err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
		return nil
	})
	return b, err
}

func readAll(ctx context.Context, bkt objstore.BucketReader, name string) ([]byte, error) {
	return readLimited(ctx, bkt, name, 1<<62)
}

// readAttempts: a read that failed (an error answer, a body cut off midway)
// is tried this many times in all; "not found", a cancelled query and one
// over its budget (querylimit) are not retried.
const readAttempts = 3

func withRetries(ctx context.Context, bkt objstore.BucketReader, read func() error) error {
	var err error
	for attempt := 1; attempt <= readAttempts; attempt++ {
		if err = read(); err == nil || ctx.Err() != nil || notFound(bkt, err) || querylimit.IsExceeded(err) {
			return err
		}
		if attempt < readAttempts {
			select {
			case <-ctx.Done():
				return err
			case <-time.After(time.Duration(attempt) * 50 * time.Millisecond):
			}
		}
	}
	return err
}

// notFound reports whether err, or an error it wraps, is the bucket's "no such object".
func notFound(bkt objstore.BucketReader, err error) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if bkt.IsObjNotFoundErr(e) {
			return true
		}
	}
	return false
}

// SeriesLabels returns the label sets of matching series with rows in [start, end] ns.
func (r *Reader) SeriesLabels(match func(model.Labels) bool, start, end int64) []model.Labels {
	var out []model.Labels
	for i := range r.series {
		s := &r.series[i]
		if s.MaxTime < start || s.MinTime > end || (match != nil && !match(s.Labels)) {
			continue
		}
		out = append(out, s.Labels)
	}
	return out
}

// Symbols returns the block's symbol tables, loading them when not cached.
func (r *Reader) Symbols(ctx context.Context) (*symdb.Snapshot, error) {
	return r.syms.get(ctx, r.meta.ULID.String(), func(ctx context.Context) (*symdb.Snapshot, error) {
		b, err := readAll(ctx, r.bkt, path.Join(r.prefix, SymbolsFile))
		if err != nil {
			return nil, err
		}
		sn, err := DecodeSymbols(b)
		if err != nil {
			return nil, fmt.Errorf("block %s: %w", r.prefix, err)
		}
		return sn, nil
	})
}

func (r *Reader) openProfiles() (*parquet.File, error) {
	r.fileOnce.Lock()
	defer r.fileOnce.Unlock()
	if r.file != nil {
		return r.file, nil
	}
	size := r.meta.FileSize(ProfilesFile)
	bf := &bucketFile{bkt: r.bkt, name: path.Join(r.prefix, ProfilesFile), size: size}
	f, err := parquet.OpenFile(bf, size, parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true),
		parquet.ReadBufferSize(r.rbuf), parquet.OptimisticRead(true))
	if err != nil {
		return nil, fmt.Errorf("block %s: %w: profiles.parquet: %v", r.prefix, ErrCorrupt, err)
	}
	want := []string{"series", "time_ns", "id", "total", "samples"}
	cols := f.Schema().Columns()
	if len(cols) != len(want) {
		return nil, fmt.Errorf("block %s: %w: profiles.parquet has %d columns, want %d", r.prefix, ErrCorrupt, len(cols), len(want))
	}
	for i, c := range cols {
		if len(c) != 1 || c[0] != want[i] {
			return nil, fmt.Errorf("block %s: %w: profiles.parquet column %d is %v, want %s", r.prefix, ErrCorrupt, i, c, want[i])
		}
	}
	if f.NumRows() != r.meta.Stats.Profiles {
		return nil, fmt.Errorf("block %s: %w: profiles.parquet has %d rows, meta.json says %d", r.prefix, ErrCorrupt, f.NumRows(), r.meta.Stats.Profiles)
	}
	r.timeCol = 1
	md := f.Metadata()
	r.rgFirst = make([]int64, 0, len(md.RowGroups)+1)
	r.rgTime = make([][2]int64, len(md.RowGroups))
	var row int64
	for i, rg := range md.RowGroups {
		r.rgFirst = append(r.rgFirst, row)
		row += rg.NumRows
		r.rgTime[i] = [2]int64{-1 << 63, 1<<63 - 1} // unknown: no pruning
		if len(rg.Columns) == len(want) {
			st := rg.Columns[r.timeCol].MetaData.Statistics
			if len(st.MinValue) == 8 && len(st.MaxValue) == 8 {
				r.rgTime[i] = [2]int64{int64(binary.LittleEndian.Uint64(st.MinValue)), int64(binary.LittleEndian.Uint64(st.MaxValue))}
			}
		}
	}
	r.rgFirst = append(r.rgFirst, row)
	r.file, r.pf = f, bf
	return f, nil
}

// span is a run of rows of one series inside one row group.
type span struct {
	series int
	lo, hi int64 // rows, relative to the row group
}

// Select returns the rows of profile type ptype ("" for all) of matching
// series whose time is in [start, end] ns, with the block's symbols: the same
// shape a head returns. A block with nothing to return gives a Selection
// without series (and without symbols).
func (r *Reader) Select(ctx context.Context, ptype string, match func(model.Labels) bool, start, end int64) (sel head.Selection, err error) {
	defer func() {
		if p := recover(); p != nil { // a damaged file must not take the process down
			sel, err = head.Selection{}, fmt.Errorf("block %s: %w: reading profiles: %v", r.prefix, ErrCorrupt, p)
		}
	}()
	var cands []int
	for i := range r.series {
		s := &r.series[i]
		if s.MaxTime < start || s.MinTime > end {
			continue
		}
		if ptype != "" && s.Labels.Get(model.LabelProfileType) != ptype {
			continue
		}
		if match != nil && !match(s.Labels) {
			continue
		}
		cands = append(cands, i)
	}
	if len(cands) == 0 {
		return head.Selection{}, nil
	}
	f, err := r.openProfiles()
	if err != nil {
		return head.Selection{}, err
	}
	// Row groups to read, with the spans of rows wanted in each.
	groups := map[int][]span{}
	for _, si := range cands {
		s := &r.series[si]
		a, b := s.FirstRow, s.FirstRow+s.Rows
		g := sort.Search(len(r.rgFirst)-1, func(g int) bool { return r.rgFirst[g+1] > a })
		for ; g < len(r.rgFirst)-1 && r.rgFirst[g] < b; g++ {
			if t := r.rgTime[g]; t[1] < start || t[0] > end {
				continue
			}
			lo, hi := max(a, r.rgFirst[g]), min(b, r.rgFirst[g+1])
			groups[g] = append(groups[g], span{series: si, lo: lo - r.rgFirst[g], hi: hi - r.rgFirst[g]})
		}
	}
	if len(groups) == 0 {
		return head.Selection{}, nil
	}
	if head.TotalsOnly(ctx) {
		return r.selectTotals(ctx, f, cands, groups, start, end)
	}
	syms, err := r.Symbols(ctx)
	if err != nil {
		return head.Selection{}, err
	}
	order := sortedGroups(groups)
	pins, err := r.pf.pin(ctx, f, order, nil)
	if err != nil {
		return head.Selection{}, fmt.Errorf("block %s: %w", r.prefix, err)
	}
	defer r.pf.unpin(pins)

	out := r.presized(groups, start, end)
	rgs := f.RowGroups()
	buf := make([]profileRow, 256)
	nodes := uint32(len(syms.Nodes))
	for _, g := range order {
		if err := ctx.Err(); err != nil {
			return head.Selection{}, err
		}
		rd := parquet.NewGenericRowGroupReader[profileRow](rgs[g])
		for _, sp := range groups[g] {
			if err := rd.SeekToRow(sp.lo); err != nil {
				rd.Close()
				return head.Selection{}, fmt.Errorf("block %s: %w: row group %d: %v", r.prefix, ErrCorrupt, g, err)
			}
			for left := sp.hi - sp.lo; left > 0; {
				for i := range buf {
					buf[i].Samples = nil // read into fresh memory: the rows keep it
				}
				n, err := rd.Read(buf[:min(left, int64(len(buf)))])
				if n == 0 && err != nil {
					rd.Close()
					return head.Selection{}, fmt.Errorf("block %s: %w: row group %d: %v", r.prefix, ErrCorrupt, g, err)
				}
				left -= int64(n)
				for _, row := range buf[:n] {
					if int(row.Series) != sp.series {
						rd.Close()
						return head.Selection{}, fmt.Errorf("block %s: %w: row of series %d where the index puts series %d", r.prefix, ErrCorrupt, row.Series, sp.series)
					}
					if row.Time < start || row.Time > end {
						continue
					}
					if err := checkSamples(row.Samples, nodes); err != nil {
						rd.Close()
						return head.Selection{}, fmt.Errorf("block %s: %w", r.prefix, err)
					}
					out[sp.series] = append(out[sp.series], head.Profile{
						ID: row.ID, TimeNanos: row.Time, Total: row.Total, Samples: row.Samples,
					})
				}
			}
		}
		rd.Close()
	}
	sel = head.Selection{Symbols: syms}
	for _, si := range cands {
		if rows := out[si]; len(rows) > 0 {
			sel.Series = append(sel.Series, head.SeriesRows{Labels: r.series[si].Labels, Profiles: rows})
		}
	}
	if len(sel.Series) == 0 {
		return head.Selection{}, nil
	}
	return sel, nil
}

var errBadStack = errors.New("stack id beyond the symbols")

func checkSamples(b []byte, nodes uint32) error {
	if err := head.CheckSamples(b, nodes); err != nil {
		if errors.Is(err, head.ErrStackRange) {
			return fmt.Errorf("%w: samples: %v", ErrCorrupt, errBadStack)
		}
		return fmt.Errorf("%w: samples: %v", ErrCorrupt, err)
	}
	return nil
}

// selectTotals is Select for head.TotalsOnly: the rows' series, time, id
// and total, read from those four column chunks alone (the samples, most of
// a row group's bytes, and the symbols stay in the bucket). Rows have no
// samples; the selection has no symbols.
func (r *Reader) selectTotals(ctx context.Context, f *parquet.File, cands []int, groups map[int][]span, start, end int64) (head.Selection, error) {
	order := sortedGroups(groups)
	pins, err := r.pf.pin(ctx, f, order, totalsColumns)
	if err != nil {
		return head.Selection{}, fmt.Errorf("block %s: %w", r.prefix, err)
	}
	defer r.pf.unpin(pins)
	out := r.presized(groups, start, end)
	rgs := f.RowGroups()
	buf := make([]totalsRow, 256)
	for _, g := range order {
		if err := ctx.Err(); err != nil {
			return head.Selection{}, err
		}
		rd := parquet.NewGenericRowGroupReader[totalsRow](rgs[g])
		for _, sp := range groups[g] {
			if err := rd.SeekToRow(sp.lo); err != nil {
				rd.Close()
				return head.Selection{}, fmt.Errorf("block %s: %w: row group %d: %v", r.prefix, ErrCorrupt, g, err)
			}
			for left := sp.hi - sp.lo; left > 0; {
				n, err := rd.Read(buf[:min(left, int64(len(buf)))])
				if n == 0 && err != nil {
					rd.Close()
					return head.Selection{}, fmt.Errorf("block %s: %w: row group %d: %v", r.prefix, ErrCorrupt, g, err)
				}
				left -= int64(n)
				for _, row := range buf[:n] {
					if int(row.Series) != sp.series {
						rd.Close()
						return head.Selection{}, fmt.Errorf("block %s: %w: row of series %d where the index puts series %d", r.prefix, ErrCorrupt, row.Series, sp.series)
					}
					if row.Time < start || row.Time > end {
						continue
					}
					out[sp.series] = append(out[sp.series], head.Profile{ID: row.ID, TimeNanos: row.Time, Total: row.Total})
				}
			}
		}
		rd.Close()
	}
	var sel head.Selection
	for _, si := range cands {
		if rows := out[si]; len(rows) > 0 {
			sel.Series = append(sel.Series, head.SeriesRows{Labels: r.series[si].Labels, Profiles: rows})
		}
	}
	return sel, nil
}

// presized gives each series of a selection that lies wholly in [start, end]
// its rows' slice at its final size (its spans' rows, all of which are
// taken); the others grow as their rows come. A long-range query takes whole
// series, which grew row by row, copying their rows ~log2(rows) times.
func (r *Reader) presized(groups map[int][]span, start, end int64) map[int][]head.Profile {
	n := map[int]int64{}
	for _, sps := range groups {
		for _, sp := range sps {
			n[sp.series] += sp.hi - sp.lo
		}
	}
	out := make(map[int][]head.Profile, len(n))
	for si, rows := range n {
		if s := &r.series[si]; s.MinTime >= start && s.MaxTime <= end {
			out[si] = make([]head.Profile, 0, rows)
		}
	}
	return out
}

// sortedGroups is the row groups of a selection in file order.
func sortedGroups(groups map[int][]span) []int {
	order := make([]int, 0, len(groups))
	for g := range groups {
		order = append(order, g)
	}
	sort.Ints(order)
	return order
}
