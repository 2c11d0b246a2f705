package block

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/oklog/ulid/v2"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"

	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/symdb"
	"github.com/hearth-dev/hearth/internal/durable"
)

// profileRow is the schema of profiles.parquet: one row per (series,
// profile), sorted by series then time then id.
type profileRow struct {
	Series  int32    `parquet:"series,delta"`  // position in index.bin
	Time    int64    `parquet:"time_ns,delta"` // Unix ns
	ID      [16]byte `parquet:"id"`            // profile ID (a UUID)
	Total   int64    `parquet:"total,delta"`   // sum of the sample values
	Samples []byte   `parquet:"samples"`       // head.EncodeSamples: stack ids delta-coded, values zig-zag, varints
}

// totalsRow is profileRow without its samples: a reader of it reads four
// of the five column chunks of a row group (parquet-go projects by schema).
type totalsRow struct {
	Series int32    `parquet:"series,delta"`
	Time   int64    `parquet:"time_ns,delta"`
	ID     [16]byte `parquet:"id"`
	Total  int64    `parquet:"total,delta"`
}

// totalsColumns are the column indexes totalsRow reads.
var totalsColumns = []int{0, 1, 2, 3}

// WriteOptions say who writes a block and how.
type WriteOptions struct {
	Tenant string    // required
	Source string    // free-form, into meta.json (e.g. the ingester id)
	ULID   ulid.ULID // zero: a new one (ulid.Make)

	// RowGroupRows and RowGroupBytes cut profiles.parquet into row groups:
	// a row group ends after RowGroupRows rows or once its encoded samples
	// reach RowGroupBytes, whichever comes first. A reader fetches whole row
	// groups, so smaller ones skip better and cost more requests.
	// Defaults: 8192 rows, 4 MiB.
	RowGroupRows  int
	RowGroupBytes int
	// Compression of profiles.parquet pages; default zstd.
	Compression compress.Codec
}

const (
	defaultRowGroupRows  = 8192
	defaultRowGroupBytes = 4 << 20
)

// ErrEmpty is returned by Write for a selection without rows.
var ErrEmpty = errors.New("block: nothing to write")

// Write writes the selection (a frozen tenant head: every series with all
// its rows, and a symbols snapshot resolving every stack they use) as the
// block directory dir/<ULID>/ and returns its meta. The block is assembled
// in dir/<ULID>.tmp, every file and both directories synced, then renamed:
// a crash leaves either no block or a complete one (plus a .tmp directory
// that readers ignore and the next Write of the same ULID replaces).
func Write(dir string, sel head.Selection, opts WriteOptions) (Meta, error) {
	if opts.Tenant == "" {
		return Meta{}, errors.New("block: WriteOptions.Tenant is required")
	}
	if sel.Symbols == nil {
		return Meta{}, errors.New("block: selection has no symbols")
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

	plan, err := planBlock(sel)
	if err != nil {
		return Meta{}, err
	}
	if plan.meta.Stats.Profiles == 0 {
		return Meta{}, ErrEmpty
	}
	meta := plan.meta
	meta.Version, meta.ULID, meta.Tenant, meta.Source = FormatVersion, opts.ULID, opts.Tenant, opts.Source

	final := filepath.Join(dir, opts.ULID.String())
	tmp := final + ".tmp"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Meta{}, err
	}
	if err := os.RemoveAll(tmp); err != nil {
		return Meta{}, err
	}
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return Meta{}, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(tmp)
		}
	}()

	add := func(name string, size int64) { meta.Files = append(meta.Files, File{Name: name, Size: size}) }
	symBytes := encodeSymbols(plan.symbols)
	if err := writeFileSync(filepath.Join(tmp, SymbolsFile), symBytes); err != nil {
		return Meta{}, err
	}
	add(SymbolsFile, int64(len(symBytes)))
	idx := encodeIndex(plan.series)
	if err := writeFileSync(filepath.Join(tmp, IndexFile), idx); err != nil {
		return Meta{}, err
	}
	add(IndexFile, int64(len(idx)))
	n, err := writeProfiles(filepath.Join(tmp, ProfilesFile), plan, &opts)
	if err != nil {
		return Meta{}, err
	}
	add(ProfilesFile, n)
	slices.SortFunc(meta.Files, func(a, b File) int { return cmp.Compare(a.Name, b.Name) })
	mb, err := MarshalMeta(&meta)
	if err != nil {
		return Meta{}, err
	}
	if err := writeFileSync(filepath.Join(tmp, MetaFile), mb); err != nil {
		return Meta{}, err
	}
	if err := durable.SyncDir(tmp); err != nil {
		return Meta{}, err
	}
	if err := os.RemoveAll(final); err != nil {
		return Meta{}, err
	}
	if err := os.Rename(tmp, final); err != nil {
		return Meta{}, err
	}
	ok = true
	if err := durable.SyncDir(dir); err != nil {
		return Meta{}, err
	}
	return meta, nil
}

// plan is a block laid out in memory before it is written.
type plan struct {
	meta    Meta
	series  []Series
	src     []head.SeriesRows // per series; their rows may be packed (head.Tenant.SelectPacked)
	nodeMap []uint32          // the pruned symbols' stack renumbering; nil: none
	symbols *symdb.Snapshot
}

// sortedRows returns a series' rows sorted by time then id, with their
// samples (unpacked: one series at a time is in memory).
func sortedRows(sr *head.SeriesRows) []head.Profile {
	rows := slices.Clone(sr.Unpacked(0, len(sr.Profiles)))
	slices.SortFunc(rows, func(a, b head.Profile) int {
		if c := cmp.Compare(a.TimeNanos, b.TimeNanos); c != 0 {
			return c
		}
		return slices.Compare(a.ID[:], b.ID[:])
	})
	return rows
}

// rowsOf returns series si's rows as the block stores them: sorted, their
// stacks renumbered to the pruned symbols.
func (p *plan) rowsOf(si int) ([]head.Profile, error) {
	rows := sortedRows(&p.src[si])
	if p.nodeMap != nil {
		// Some symbols are unused (e.g. pushes refused after their symbols
		// were interned): renumber the stacks of every row.
		remap := func(st uint32) uint32 { return p.nodeMap[st] }
		for i := range rows {
			enc, err := head.RemapSamples(nil, rows[i].Samples, remap) // keeps the span samples
			if err != nil {
				return nil, fmt.Errorf("block: %w", err)
			}
			rows[i].Samples = enc
		}
	}
	return rows, nil
}

func planBlock(sel head.Selection) (*plan, error) {
	p := &plan{}
	order := make([]head.SeriesRows, 0, len(sel.Series))
	for _, sr := range sel.Series {
		if len(sr.Profiles) > 0 {
			order = append(order, sr)
		}
	}
	slices.SortStableFunc(order, func(a, b head.SeriesRows) int { return compareLabels(a.Labels, b.Labels) })
	for i := 1; i < len(order); i++ {
		if compareLabels(order[i-1].Labels, order[i].Labels) == 0 {
			return nil, fmt.Errorf("block: series %s appears twice in the selection", order[i].Labels)
		}
	}
	pr := newPruner(sel.Symbols)
	nodes := uint32(len(sel.Symbols.Nodes))
	p.meta.MinTime, p.meta.MaxTime = 1<<63-1, -1<<63
	var firstRow int64
	for oi := range order {
		sr := &order[oi]
		rows := sortedRows(sr)
		var bad error
		for i := range rows {
			err := head.DecodeSamples(rows[i].Samples, func(st uint32, _ int64) {
				if st >= nodes {
					bad = fmt.Errorf("block: series %s: stack %d is not in the symbols (%d nodes)", sr.Labels, st, nodes)
					return
				}
				pr.useStack(st)
				p.meta.Stats.Samples++
			})
			if err != nil {
				return nil, fmt.Errorf("block: series %s: %w", sr.Labels, err)
			}
			if bad != nil {
				return nil, bad
			}
		}
		s := Series{Labels: sr.Labels, FirstRow: firstRow, Rows: int64(len(rows)), MinTime: rows[0].TimeNanos, MaxTime: rows[len(rows)-1].TimeNanos}
		firstRow += s.Rows
		p.meta.MinTime = min(p.meta.MinTime, s.MinTime)
		p.meta.MaxTime = max(p.meta.MaxTime, s.MaxTime)
		p.series = append(p.series, s)
		p.src = append(p.src, *sr)
	}
	p.meta.Stats.Series = int64(len(p.series))
	p.meta.Stats.Profiles = firstRow
	if firstRow == 0 {
		p.meta.MinTime, p.meta.MaxTime = 0, 0
	}
	p.symbols, p.nodeMap = pr.prune()
	return p, nil
}

func writeProfiles(path string, p *plan, opts *WriteOptions) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	w := parquet.NewGenericWriter[profileRow](bw,
		parquet.Compression(opts.Compression),
		parquet.PageBufferSize(256<<10),
		parquet.MaxRowsPerRowGroup(int64(opts.RowGroupRows)),
		parquet.SkipPageBounds("samples"),
		parquet.SkipPageBounds("id"),
		parquet.KeyValueMetadata("hearth.format_version", fmt.Sprint(FormatVersion)),
	)
	batch := make([]profileRow, 0, 256)
	groupRows, groupBytes := 0, 0
	flushBatch := func() error {
		if len(batch) == 0 {
			return nil
		}
		_, err := w.Write(batch)
		batch = batch[:0]
		return err
	}
	for si := range p.src {
		rows, err := p.rowsOf(si)
		if err != nil {
			return 0, err
		}
		for _, r := range rows {
			batch = append(batch, profileRow{Series: int32(si), Time: r.TimeNanos, ID: r.ID, Total: r.Total, Samples: r.Samples})
			groupRows++
			groupBytes += len(r.Samples)
			if len(batch) == cap(batch) {
				if err := flushBatch(); err != nil {
					return 0, err
				}
			}
			if groupRows >= opts.RowGroupRows || groupBytes >= opts.RowGroupBytes {
				if err := flushBatch(); err != nil {
					return 0, err
				}
				if err := w.Flush(); err != nil {
					return 0, err
				}
				groupRows, groupBytes = 0, 0
			}
		}
	}
	if err := flushBatch(); err != nil {
		return 0, err
	}
	if err := w.Close(); err != nil {
		return 0, err
	}
	if err := bw.Flush(); err != nil {
		return 0, err
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), f.Close()
}

func writeFileSync(path string, b []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
