package block

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/parquet-go/parquet-go"
	"github.com/thanos-io/objstore"
)

// bucketFile is an io.ReaderAt over one bucket object, for parquet-go. A
// query pins the byte ranges of the row groups it reads, each fetched with
// one GetRange (adjacent row groups merged), and parquet-go's reads inside
// them are served from memory; other reads (the footer, on open) are ranged
// reads of their own.
type bucketFile struct {
	bkt  objstore.BucketReader
	name string
	size int64

	mu     sync.Mutex
	pinned []*pinned
}

type pinned struct {
	off  int64
	data []byte
}

// maxPin bounds one fetched range.
const maxPin = 1 << 30

// mergeGap joins row-group ranges this close into one request.
const mergeGap = 64 << 10

func (b *bucketFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%s: negative offset %d", b.name, off)
	}
	if off >= b.size {
		return 0, io.EOF
	}
	want := p
	if end := off + int64(len(p)); end > b.size {
		want = p[:b.size-off]
	}
	b.mu.Lock()
	for _, pr := range b.pinned {
		if off >= pr.off && off+int64(len(want)) <= pr.off+int64(len(pr.data)) {
			n := copy(want, pr.data[off-pr.off:])
			b.mu.Unlock()
			return eofIfShort(n, len(p))
		}
	}
	b.mu.Unlock()
	if err := b.fetch(context.Background(), off, want); err != nil {
		return 0, err
	}
	return eofIfShort(len(want), len(p))
}

func eofIfShort(n, want int) (int, error) {
	if n < want {
		return n, io.EOF
	}
	return n, nil
}

func (b *bucketFile) fetch(ctx context.Context, off int64, dst []byte) error {
	return withRetries(ctx, b.bkt, func() error {
		rc, err := b.bkt.GetRange(ctx, b.name, off, int64(len(dst)))
		if err != nil {
			return fmt.Errorf("read %s [%d,+%d): %w", b.name, off, len(dst), err)
		}
		defer rc.Close()
		if _, err := io.ReadFull(rc, dst); err != nil {
			return fmt.Errorf("read %s [%d,+%d): %w", b.name, off, len(dst), err)
		}
		return nil
	})
}

// pin fetches the byte ranges of the given row groups (ascending): of
// their columns cols (nil: all).
func (b *bucketFile) pin(ctx context.Context, f *parquet.File, groups []int, cols []int) ([]*pinned, error) {
	md := f.Metadata()
	type rng struct{ lo, hi int64 }
	var rs []rng
	gap := int64(mergeGap)
	if cols != nil {
		gap = 0 // the gaps are the columns left out: fetching them would defeat the projection
	}
	for _, g := range groups {
		lo, hi := int64(1<<62), int64(0)
		for ci, c := range md.RowGroups[g].Columns {
			if cols != nil && !slices.Contains(cols, ci) {
				continue
			}
			m := &c.MetaData
			start := m.DataPageOffset
			if m.DictionaryPageOffset > 0 && m.DictionaryPageOffset < start {
				start = m.DictionaryPageOffset
			}
			lo = min(lo, start)
			hi = max(hi, start+m.TotalCompressedSize)
		}
		if lo < 0 || hi > b.size || lo >= hi || hi-lo > maxPin {
			return nil, fmt.Errorf("%w: row group %d spans bytes [%d,%d) of a %d-byte file", ErrCorrupt, g, lo, hi, b.size)
		}
		if n := len(rs); n > 0 && lo >= rs[n-1].lo && lo <= rs[n-1].hi+gap && hi-rs[n-1].lo <= maxPin {
			rs[n-1].hi = max(rs[n-1].hi, hi)
			continue
		}
		rs = append(rs, rng{lo, hi})
	}
	out := make([]*pinned, 0, len(rs))
	for _, r := range rs {
		p := &pinned{off: r.lo, data: make([]byte, r.hi-r.lo)}
		if err := b.fetch(ctx, r.lo, p.data); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	b.mu.Lock()
	b.pinned = append(b.pinned, out...)
	b.mu.Unlock()
	return out, nil
}

func (b *bucketFile) unpin(ps []*pinned) {
	b.mu.Lock()
	defer b.mu.Unlock()
	keep := b.pinned[:0]
	for _, p := range b.pinned {
		drop := false
		for _, q := range ps {
			if p == q {
				drop = true
				break
			}
		}
		if !drop {
			keep = append(keep, p)
		}
	}
	clear(b.pinned[len(keep):])
	b.pinned = keep
}
