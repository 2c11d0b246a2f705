package head

import (
	"encoding/binary"
	"math/bits"
	"slices"
	"sync"

	"github.com/cespare/xxhash/v2"
)

// AggregateRows is the chunk size of the head's per-series aggregates: every
// AggregateRows profiles a series receives, the head merges their samples
// once (stack id → sum, encoded like a row), so that a query reading the
// whole chunk decodes one aggregate instead of AggregateRows rows. A merge of
// 700 large profiles of one series then decodes about 22 aggregates and the
// last few rows. Aggregates are kept only when they save work: a chunk whose
// merged samples take more than 1/aggregateMaxShare of its rows' bytes (rows
// with few stacks in common) keeps none, so aggregates add at most that share
// to the memory of the rows (1/AggregateRows when a series repeats its stacks).
const AggregateRows = 32

const aggregateMaxShare = 4

// chunkAgg is the aggregate of one series' chunk k: profiles[k*AggregateRows:][:AggregateRows].
type chunkAgg struct {
	digest  uint64 // of the chunk's rows (rowsDigest)
	samples []byte // nil: not worth keeping
}

// Aggregate is the merged samples of Profiles[First:First+Rows] of the
// SeriesRows that carries it, encoded like a row (EncodeSamples). It is only
// an accelerator: Profiles stay complete, and a SeriesRows whose Profiles
// were filtered or re-sliced no longer matches its aggregates (Valid).
type Aggregate struct {
	First, Rows int
	Samples     []byte
	digest      uint64
}

// Valid reports whether the aggregate still describes rows[First:First+Rows]:
// the same rows (ids and times) it was merged from.
func (a *Aggregate) Valid(rows []Profile) bool {
	return a.First >= 0 && a.Rows > 0 && a.First+a.Rows <= len(rows) && rowsDigest(rows[a.First:a.First+a.Rows]) == a.digest
}

// rowsDigest fingerprints rows by their ids, times and totals.
func rowsDigest(rows []Profile) uint64 {
	d := xxhash.New()
	var buf [32]byte
	for i := range rows {
		copy(buf[:16], rows[i].ID[:])
		binary.LittleEndian.PutUint64(buf[16:], uint64(rows[i].TimeNanos))
		binary.LittleEndian.PutUint64(buf[24:], uint64(rows[i].Total))
		_, _ = d.Write(buf[:])
	}
	return d.Sum64()
}

type chunkJob struct {
	s      *series
	k      int
	all    []Profile // the series' rows and packed blocks when the chunk filled
	packed []packedBlock
}

// aggregate merges full chunks outside the tenant lock (their rows are
// immutable) and installs the results; it returns the bytes added.
func (t *Tenant) aggregate(jobs []chunkJob) int64 {
	aggs := make([]chunkAgg, len(jobs))
	var added int64
	for i, j := range jobs {
		rows := unpackRange(j.all, j.packed, j.k*AggregateRows, (j.k+1)*AggregateRows)
		aggs[i] = chunkAgg{digest: rowsDigest(rows), samples: mergeRows(rows)}
		added += int64(cap(aggs[i].samples)) + 32
	}
	t.mu.Lock()
	for i, j := range jobs {
		for len(j.s.aggs) <= j.k {
			j.s.aggs = append(j.s.aggs, chunkAgg{})
		}
		j.s.aggs[j.k] = aggs[i]
	}
	t.mu.Unlock()
	return added
}

// mergeSums is a reusable accumulator for mergeRows: sums and a bitmap of the
// stacks seen, indexed by stack id, zero between uses.
type mergeSums struct {
	sums    []int64
	seen    []uint64
	scratch []uint32
	stacks  []uint32
	values  []int64
	enc     []byte
}

var mergePool sync.Pool // *mergeSums

// maxDenseStack bounds the accumulator (8 MiB of sums); chunks referring to
// larger stack ids merge through a map.
const maxDenseStack = 1 << 20

// mergeRows returns the encoded sum of rows, nil when it is not worth keeping
// (or a row does not decode: queries then read the rows and report it).
func mergeRows(rows []Profile) []byte {
	var bytes int
	maxStack := uint32(0)
	for i := range rows {
		bytes += len(rows[i].Samples)
		m, ok := lastStack(rows[i].Samples)
		if !ok {
			return nil
		}
		maxStack = max(maxStack, m)
	}
	m, _ := mergePool.Get().(*mergeSums)
	if m == nil {
		m = &mergeSums{}
	}
	defer mergePool.Put(m)
	m.stacks, m.values = m.stacks[:0], m.values[:0]
	if maxStack < maxDenseStack {
		n := int(maxStack) + 1
		if len(m.sums) < n {
			m.sums = make([]int64, n)
			m.seen = make([]uint64, (n+63)/64)
		}
		sums, seen := m.sums[:n], m.seen[:(n+63)/64]
		var err error
		for i := range rows {
			if m.scratch, err = SumSamples(rows[i].Samples, sums, seen, m.scratch); err != nil {
				break
			}
		}
		m.stacks, m.values = DrainSums(sums, seen, m.stacks, m.values)
		if err != nil {
			return nil
		}
	} else {
		acc := map[uint32]int64{}
		for i := range rows {
			if err := DecodeSamples(rows[i].Samples, func(st uint32, v int64) { acc[st] += v }); err != nil {
				return nil
			}
		}
		for st := range acc {
			m.stacks = append(m.stacks, st)
		}
		slices.Sort(m.stacks)
		for _, st := range m.stacks {
			m.values = append(m.values, acc[st])
		}
	}
	m.enc = EncodeSamples(m.enc[:0], m.stacks, m.values)
	if len(m.enc)*aggregateMaxShare > bytes {
		return nil
	}
	return append([]byte(nil), m.enc...) // exact size: it lives as long as the head
}

// lastStack returns the largest stack id of an encoded row (they are sorted).
func lastStack(b []byte) (uint32, bool) {
	n, i := uvarint(b, 0)
	if i < 0 || n > uint64(len(b)) {
		return 0, false
	}
	prev := uint32(0)
	for j := uint64(0); j < n; j++ {
		var d uint64
		if d, i = uvarint(b, i); i < 0 {
			return 0, false
		}
		prev += uint32(d)
	}
	return prev, true
}

// DrainSums appends the stacks whose bit is set in seen, ascending, and their
// sums, and zeroes both sums and seen for the next use.
func DrainSums(sums []int64, seen []uint64, stacks []uint32, values []int64) ([]uint32, []int64) {
	for wi, w := range seen {
		if w == 0 {
			continue
		}
		for ; w != 0; w &= w - 1 {
			st := uint32(wi*64 + bits.TrailingZeros64(w))
			stacks = append(stacks, st)
			values = append(values, sums[st])
			sums[st] = 0
		}
		seen[wi] = 0
	}
	return stacks, values
}
