// Package pprofdec decodes pprof profiles as they arrive on the wire: gzip
// sniffed by its magic bytes (never by a file name or a header), decompression
// bounded by a caller-chosen limit, then a vtproto unmarshal into the
// google.v1 types. Gzip readers are pooled, so decoding allocates little
// beyond the profile itself.
package pprofdec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"unsafe"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
	"github.com/klauspost/compress/gzip"
)

// IsGzip reports whether b starts with the gzip magic bytes.
func IsGzip(b []byte) bool {
	return len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b
}

// ErrTooLarge is returned (wrapped in a *SizeError) when the decompressed
// profile would exceed the caller's limit.
var ErrTooLarge = errors.New("decompressed profile too large")

// SizeError says which limit was exceeded and by how much (at least).
type SizeError struct {
	Limit int // the limit in bytes
	Size  int // the size reached when decoding stopped (> Limit)
}

func (e *SizeError) Error() string {
	return fmt.Sprintf("decompressed profile exceeds the limit of %d bytes (at least %d bytes)", e.Limit, e.Size)
}

// Unwrap lets errors.Is(err, ErrTooLarge) work.
func (e *SizeError) Unwrap() error { return ErrTooLarge }

var readerPool sync.Pool // *gzip.Reader

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// Gunzip returns the decompressed bytes of b if b is gzip, else b itself.
// maxDecompressed <= 0 means no limit. Multi-member gzip streams are read in
// full, as gzip(1) does.
func Gunzip(b []byte, maxDecompressed int) ([]byte, error) {
	if !IsGzip(b) {
		if maxDecompressed > 0 && len(b) > maxDecompressed {
			return nil, &SizeError{Limit: maxDecompressed, Size: len(b)}
		}
		return b, nil
	}
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 64<<20 {
			bufPool.Put(buf)
		}
	}()
	if err := gunzipTo(buf, b, maxDecompressed); err != nil {
		return nil, err
	}
	return bytes.Clone(buf.Bytes()), nil
}

func gunzipTo(dst *bytes.Buffer, b []byte, maxDecompressed int) error {
	var zr *gzip.Reader
	if v := readerPool.Get(); v != nil {
		zr = v.(*gzip.Reader)
		if err := zr.Reset(bytes.NewReader(b)); err != nil {
			readerPool.Put(zr)
			return fmt.Errorf("invalid gzip header: %w", err)
		}
	} else {
		var err error
		zr, err = gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return fmt.Errorf("invalid gzip header: %w", err)
		}
	}
	defer readerPool.Put(zr)
	// Guess the size: pprof compresses roughly 4-10x.
	guess := 8 * len(b)
	if maxDecompressed > 0 && guess > maxDecompressed+1 {
		guess = maxDecompressed + 1
	}
	dst.Grow(guess)
	var r io.Reader = zr
	if maxDecompressed > 0 {
		r = io.LimitReader(zr, int64(maxDecompressed)+1)
	}
	if _, err := dst.ReadFrom(r); err != nil {
		return fmt.Errorf("invalid gzip data: %w", err)
	}
	if maxDecompressed > 0 && dst.Len() > maxDecompressed {
		return &SizeError{Limit: maxDecompressed, Size: dst.Len()}
	}
	return nil
}

// DecodePprof decodes a pprof profile, gzip-compressed or not, refusing to
// decompress more than maxDecompressed bytes (<= 0: no limit). The profile
// is the caller's for good (its memory is not pooled); Decode is the pooled
// form for the write path.
func DecodePprof(b []byte, maxDecompressed int) (*googlev1.Profile, error) {
	a := new(Arena)
	return a.Decode(b, maxDecompressed)
}

// Arena is the memory of one decoded profile: the profile, its messages,
// repeated fields and strings (which point into the decompressed bytes it
// keeps). The write path decodes every pushed profile into a pooled arena
// (Decode) and releases it when the push is done: a profile dies with its
// push, and reusing its memory takes most of the write path's allocation
// (and the collector's work) away.
//
// The contract: after Release, nothing may read the profile or anything it
// holds, strings included. Whatever outlives the push (series labels, the
// head's interned symbols, the WAL record) must be copied from it; the
// head and the record encoder do (SetReleaseMode lets tests prove it).
type Arena struct {
	p        googlev1.Profile
	buf      bytes.Buffer // the decompressed profile: the strings point into it
	pooled   bool
	large    bool // kept in largeFree
	released bool

	sampleTypes []googlev1.ValueType
	periodType  googlev1.ValueType
	samples     []googlev1.Sample
	mappings    []googlev1.Mapping
	locations   []googlev1.Location
	functions   []googlev1.Function

	sampleTypePtrs []*googlev1.ValueType
	samplePtrs     []*googlev1.Sample
	mappingPtrs    []*googlev1.Mapping
	locationPtrs   []*googlev1.Location
	functionPtrs   []*googlev1.Function
	strs           []string

	// Shared arrays the samples and locations are cut from (take); their
	// length is what the current profile uses.
	u64      []uint64
	i64      []int64
	lbl      []googlev1.Label
	lblPtrs  []*googlev1.Label
	lines    []googlev1.Line
	linePtrs []*googlev1.Line
	scratch  []byte // Bytes
	// What the last decode took from the arrays it replaced (take).
	spill struct{ u64, i64, lbl, lblPtrs, lines, linePtrs int }
}

var arenaPool = sync.Pool{New: func() any { return &Arena{pooled: true} }}

// largeFree keeps at most MaxLargeArenas arenas of large profiles. Not a
// sync.Pool: one arena kept per concurrent large push, ~10 MB each that
// the collector counts live and doubles in its heap goal, raised the peak
// RSS of the standard load by 50 MB; a large profile is one push in twelve
// there, and rarely two decode at once.
var largeFree = make(chan *Arena, MaxLargeArenas)

func getLarge() *Arena {
	select {
	case a := <-largeFree:
		return a
	default:
		return &Arena{pooled: true, large: true}
	}
}

func putLarge(a *Arena) {
	select {
	case largeFree <- a:
	default: // enough kept: the collector takes this one
	}
}

// MaxPooledBytes bounds the memory an arena may keep when it goes back to
// the pool: one that decoded a very large profile is dropped instead, so
// the pool holds about (concurrent pushes) × (a typical profile's arena).
const MaxPooledBytes = 8 << 20

// Profiles of about LargeProfileBytes or more decompressed (a large Go heap
// profile: 0.9 MB, about 10 MB of arena) take their arenas from a free
// list of their own (largeFree), which keeps MaxLargeArenas arenas of up to
// MaxPooledLargeBytes: pooled with the small ones, every arena would grow
// to the largest profile's size; not pooled, each such push allocated its
// whole arena again (half of its 15 MB). An arena of the small pool that grew
// past MaxPooledBytes goes to the large list.
const (
	LargeProfileBytes   = 512 << 10
	MaxPooledLargeBytes = 32 << 20
	MaxLargeArenas      = 2
)

// largeInput guesses whether b decodes to a large profile: pprof compresses
// about 3-10x. (The gzip trailer's size is no help: a push may be several
// gzip members, as hearth load's are.)
func largeInput(b []byte) bool {
	n := len(b)
	if IsGzip(b) {
		n *= 4
	}
	return n >= LargeProfileBytes
}

// Decode decodes a pprof profile (as DecodePprof) into an arena from the
// pool. The profile and everything it holds are valid until a.Release(),
// which the caller must call once nothing reads them any more (also after
// an error: a is never nil).
func Decode(b []byte, maxDecompressed int) (*googlev1.Profile, *Arena, error) {
	var a *Arena
	if ReleaseMode(mode.Load()) == ReleaseNever {
		a = new(Arena)
	} else {
		if largeInput(b) {
			a = getLarge()
		} else {
			a = arenaPool.Get().(*Arena)
		}
		a.released = false
	}
	p, err := a.Decode(b, maxDecompressed)
	return p, a, err
}

// Decode decodes b into a (which must be new or released). Most callers
// want the package's Decode or DecodePprof.
func (a *Arena) Decode(b []byte, maxDecompressed int) (*googlev1.Profile, error) {
	if len(b) == 0 {
		return nil, errors.New("empty profile")
	}
	a.buf.Reset()
	if !IsGzip(b) {
		if maxDecompressed > 0 && len(b) > maxDecompressed {
			return nil, &SizeError{Limit: maxDecompressed, Size: len(b)}
		}
		// A copy: the strings must not point into the caller's bytes.
		a.buf.Write(b)
	} else if err := gunzipTo(&a.buf, b, maxDecompressed); err != nil {
		return nil, err
	}
	a.p = googlev1.Profile{}
	if a.decode() == nil {
		return &a.p, nil
	}
	// A malformed or unusual encoding: UnmarshalVT, whose error it returns
	// (its profile allocates its own memory).
	p := new(googlev1.Profile)
	if err := p.UnmarshalVT(a.buf.Bytes()); err != nil {
		return nil, fmt.Errorf("invalid pprof protobuf: %w", err)
	}
	return p, nil
}

// Release hands the arena back to the pool (if it came from there): the
// profile it decoded must not be read any more. Release of nil does nothing.
func (a *Arena) Release() {
	if a == nil || !a.pooled {
		return
	}
	if a.released {
		panic("pprofdec: arena released twice")
	}
	a.released = true
	poisoned := ReleaseMode(mode.Load()) == ReleasePoison
	if poisoned {
		a.poison()
	}
	// Drop the pointers to the messages, which normalize's repairs may
	// have replaced with their own, and the profile.
	clear(a.samplePtrs)
	clear(a.locationPtrs)
	clear(a.mappingPtrs)
	clear(a.functionPtrs)
	clear(a.sampleTypePtrs)
	if !poisoned {
		clear(a.strs[:cap(a.strs)])
	}
	a.p = googlev1.Profile{}
	settle(&a.u64, &a.spill.u64)
	settle(&a.i64, &a.spill.i64)
	settle(&a.lbl, &a.spill.lbl)
	settle(&a.lblPtrs, &a.spill.lblPtrs)
	settle(&a.lines, &a.spill.lines)
	settle(&a.linePtrs, &a.spill.linePtrs)
	a.u64, a.i64, a.lbl, a.lblPtrs = a.u64[:0], a.i64[:0], a.lbl[:0], a.lblPtrs[:0]
	a.lines, a.linePtrs = a.lines[:0], a.linePtrs[:0]
	if !a.large && a.footprint() > MaxPooledBytes {
		a.large = true // a large profile the guess missed
	}
	switch {
	case !a.keepable():
	case a.large:
		putLarge(a)
	default:
		arenaPool.Put(a)
	}
}

// footprint is about the bytes the arena's arrays hold.
// Bytes returns n bytes that belong to the arena until Release, for what the
// write path makes from the profile and drops with it: the rewritten profile
// it marshals for the WAL record (which copies it). The bytes are not zeroed.
func (a *Arena) Bytes(n int) []byte {
	if cap(a.scratch) < n {
		a.scratch = make([]byte, n)
	}
	return a.scratch[:n:n]
}

// keepable reports whether the arena goes back to its pool on Release.
func (a *Arena) keepable() bool {
	if a.large {
		return a.footprint() <= MaxPooledLargeBytes
	}
	return a.footprint() <= MaxPooledBytes
}

func (a *Arena) footprint() int {
	n := a.buf.Cap() + cap(a.scratch)
	n += cap(a.sampleTypes) * int(unsafe.Sizeof(googlev1.ValueType{}))
	n += cap(a.samples) * int(unsafe.Sizeof(googlev1.Sample{}))
	n += cap(a.mappings) * int(unsafe.Sizeof(googlev1.Mapping{}))
	n += cap(a.locations) * int(unsafe.Sizeof(googlev1.Location{}))
	n += cap(a.functions) * int(unsafe.Sizeof(googlev1.Function{}))
	n += 8 * (cap(a.sampleTypePtrs) + cap(a.samplePtrs) + cap(a.mappingPtrs) + cap(a.locationPtrs) + cap(a.functionPtrs))
	n += 16 * cap(a.strs)
	n += 8 * (cap(a.u64) + cap(a.i64) + cap(a.lblPtrs) + cap(a.linePtrs))
	n += cap(a.lbl) * int(unsafe.Sizeof(googlev1.Label{}))
	n += cap(a.lines) * int(unsafe.Sizeof(googlev1.Line{}))
	return n
}

// ReleaseMode says what Release does: for tests that prove nothing keeps a
// reference into a released profile.
type ReleaseMode int32

const (
	// ReleaseReuse (the default) hands the arena back to the pool.
	ReleaseReuse ReleaseMode = iota
	// ReleasePoison first overwrites what the released profile holds (its
	// bytes and strings, ids, values, labels, lines), so that a reference
	// kept past the push reads garbage, then hands the arena to the pool.
	ReleasePoison
	// ReleaseNever decodes every profile into memory of its own, never
	// reused: the reference a test compares the others with.
	ReleaseNever
)

var mode atomic.Int32

// SetReleaseMode sets the release mode of the arenas Decode hands out from
// now on (tests).
func SetReleaseMode(m ReleaseMode) { mode.Store(int32(m)) }

func (a *Arena) poison() {
	b := a.buf.Bytes()
	for i := range b {
		b[i] = 0xA5
	}
	for i := range a.scratch {
		a.scratch[i] = 0xA5
	}
	fill(a.u64, 0xDEAD_BEEF_DEAD_BEEF)
	fill(a.i64, -0x5A5A_5A5A)
	for i := range a.samples {
		a.samples[i].LocationId, a.samples[i].Value = a.samples[i].LocationId[:0], nil
	}
	for i := range a.locations {
		a.locations[i].Id, a.locations[i].MappingId, a.locations[i].Address = 1<<60+uint64(i), 1<<60, 0xBAD
	}
	for i := range a.mappings {
		a.mappings[i] = googlev1.Mapping{Id: 1 << 60, Filename: -1, BuildId: -1}
	}
	for i := range a.functions {
		a.functions[i] = googlev1.Function{Id: 1 << 60, Name: -1, SystemName: -1, Filename: -1}
	}
	for i := range a.lbl {
		a.lbl[i] = googlev1.Label{Key: -1, Str: -1, Num: -1}
	}
	for i := range a.lines {
		a.lines[i] = googlev1.Line{FunctionId: 1 << 60, Line: -1}
	}
	for i := range a.sampleTypes {
		a.sampleTypes[i] = googlev1.ValueType{Type: -1, Unit: -1}
	}
	for i := range a.strs[:cap(a.strs)] {
		a.strs[:cap(a.strs)][i] = "\x00released\x00"
	}
}

func fill[T any](s []T, v T) {
	for i := range s {
		s[i] = v
	}
}
