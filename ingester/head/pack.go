package head

import (
	"runtime"
	"slices"

	"github.com/klauspost/compress/zstd"
)

// PackRows is the size of the head's packed blocks: every PackRows rows a
// series receives are compressed together (zstd) and their encoded samples
// dropped, so the head keeps one compressed block instead of PackRows row
// buffers. Consecutive profiles of a series share most of their stacks (the
// same stack id lists, often the same values), which zstd finds across the
// rows: a block takes a fraction of its rows' bytes. Each row keeps its id,
// time and total; Select hands back rows with their samples decompressed, so
// a Selection is the same whether its rows were packed or not. The rows after
// the last full block stay as they were encoded.
const PackRows = 8

// packedBlock is rows [b*PackRows, (b+1)*PackRows) of a series, packed.
type packedBlock struct {
	ends [PackRows]uint32 // end of each row's samples in the unpacked bytes
	raw  bool             // data is the unpacked bytes (zstd did not make them smaller)
	data []byte
}

// packedBlockOverhead is a packedBlock's memory besides data (and its slot).
const packedBlockOverhead = 4*PackRows + 8 + 24

// The packing encoders (at most packConcurrency run at once) each keep a
// history of the window size: 2 MiB finds the repeats between the rows of a
// block up to rows of 256 KiB.
const (
	packWindow      = 2 << 20
	packConcurrency = 4
)

var (
	packEnc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithLowerEncoderMem(true),
		zstd.WithWindowSize(packWindow), zstd.WithEncoderConcurrency(min(runtime.GOMAXPROCS(0), packConcurrency)))
	packDec, _ = zstd.NewReader(nil, zstd.WithDecoderLowmem(true), zstd.WithDecoderConcurrency(min(runtime.GOMAXPROCS(0), packConcurrency)))
)

// packBlock compresses rows (PackRows of them, samples set) into a block.
func packBlock(rows []Profile) packedBlock {
	var blk packedBlock
	n := 0
	for i := range rows {
		n += len(rows[i].Samples)
		blk.ends[i] = uint32(n)
	}
	raw := make([]byte, 0, n)
	for i := range rows {
		raw = append(raw, rows[i].Samples...)
	}
	z := packEnc.EncodeAll(raw, make([]byte, 0, n/4+64))
	if len(z) >= n {
		blk.raw, blk.data = true, raw
		return blk
	}
	blk.data = append([]byte(nil), z...) // exact size: it lives as long as the head
	return blk
}

// unpackTo returns the block's rows' samples, concatenated, or nil when the
// block does not decompress. A compressed block is decompressed into fresh
// memory, or into *buf's spare capacity when buf is not nil (growing it;
// *buf is extended by the block).
func (b *packedBlock) unpackTo(buf *[]byte) []byte {
	if b.raw {
		return b.data
	}
	n := int(b.ends[PackRows-1])
	var dst []byte
	if buf != nil {
		*buf = slices.Grow(*buf, n)
		dst = (*buf)[len(*buf):len(*buf)]
	} else {
		dst = make([]byte, 0, n)
	}
	out, err := packDec.DecodeAll(b.data, dst)
	if err != nil || len(out) != n {
		return nil
	}
	if buf != nil {
		*buf = (*buf)[:len(*buf)+n]
	}
	return out[:n:n]
}

// unpackRange returns rows[lo:hi] of a series whose rows are all (a snapshot
// of its profiles) and whose packed blocks are packed, with every row's
// samples set: all[lo:hi] itself when none of them is packed, else a copy
// with the packed rows' samples decompressed (each block once).
func unpackRange(all []Profile, packed []packedBlock, lo, hi int) []Profile {
	return unpackRows(all[lo:hi:hi], lo, packed, nil, nil)
}

// unpackRows returns rows, row i being the series' row first+i, with the
// samples of its packed rows set, except those for which lazy (when not nil)
// is true: rows itself when there is nothing to unpack, else a copy. A block
// that does not decompress leaves its rows' samples nil, which every decoder
// reports as corrupt. The samples are decompressed into buf when it is not
// nil (see SeriesRows.UnpackedTo).
func unpackRows(rows []Profile, first int, packed []packedBlock, lazy func(int) bool, buf *[]byte) []Profile {
	need := func(i int) bool { return rows[i].Samples == nil && (lazy == nil || !lazy(first+i)) }
	i := 0
	for i < len(rows) && !need(i) {
		i++
	}
	if i == len(rows) {
		return rows
	}
	out := make([]Profile, len(rows))
	copy(out, rows)
	for ; i < len(out); i++ {
		if out[i].Samples != nil || (lazy != nil && lazy(first+i)) {
			continue
		}
		b := (first + i) / PackRows
		if b >= len(packed) {
			continue // cannot happen: a row without samples is in a packed block
		}
		blk := &packed[b]
		data := blk.unpackTo(buf)
		if data == nil {
			continue
		}
		// Every row of the block that is in range, from this one on.
		for j := first + i; j < (b+1)*PackRows && j < first+len(out); j++ {
			start := uint32(0)
			if k := j - b*PackRows; k > 0 {
				start = blk.ends[k-1]
			}
			end := blk.ends[j-b*PackRows]
			if out[j-first].Samples == nil {
				out[j-first].Samples = data[start:end:end]
			}
		}
	}
	return out
}

// unpackIndexed is unpackRows for rows that are the series' rows index[i]
// (increasing): rows itself when none lacks its samples, else a copy with
// the packed ones' samples set (each block decompressed once).
func unpackIndexed(rows []Profile, index []int, packed []packedBlock, buf *[]byte) []Profile {
	var out []Profile
	last, data := -1, []byte(nil)
	for i := range rows {
		if rows[i].Samples != nil {
			continue
		}
		if out == nil {
			out = make([]Profile, len(rows))
			copy(out, rows)
		}
		b := index[i] / PackRows
		if b >= len(packed) {
			continue // cannot happen: a row without samples is in a packed block
		}
		if b != last {
			last, data = b, packed[b].unpackTo(buf)
		}
		if data == nil {
			continue // does not decompress: nil samples, reported as corrupt
		}
		k := index[i] - b*PackRows
		start, end := uint32(0), packed[b].ends[k]
		if k > 0 {
			start = packed[b].ends[k-1]
		}
		out[i].Samples = data[start:end:end]
	}
	if out == nil {
		return rows
	}
	return out
}

// pack packs the full blocks of ss's series that are not packed yet, one
// block at a time, outside the tenant lock (the rows are immutable); the
// caller marked each series packing. It returns the change in bytes.
func (t *Tenant) pack(ss []*series) int64 {
	var delta int64
	for _, s := range ss {
		for more := true; more; {
			t.mu.RLock()
			b := len(s.packed)
			rows := s.profiles[b*PackRows : (b+1)*PackRows]
			t.mu.RUnlock()
			blk := packBlock(rows)
			freed := 0
			for i := range rows {
				freed += cap(rows[i].Samples)
			}
			t.mu.Lock()
			s.packed = append(s.packed, blk)
			// Copy on write: queries may hold the old slice and read its rows.
			// Room for the rows until the next pack (which copies again), not
			// append's doubling: the rows are most of a small series' memory.
			np := make([]Profile, len(s.profiles), len(s.profiles)+PackRows)
			copy(np, s.profiles)
			for i := b * PackRows; i < (b+1)*PackRows; i++ {
				np[i].Samples = nil
			}
			s.profiles = np
			more = len(s.profiles) >= (len(s.packed)+1)*PackRows
			s.packing = more
			t.mu.Unlock()
			delta += int64(cap(blk.data)) + packedBlockOverhead - int64(freed)
		}
	}
	return delta
}
