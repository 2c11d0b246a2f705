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
// decompress more than maxDecompressed bytes (<= 0: no limit).
func DecodePprof(b []byte, maxDecompressed int) (*googlev1.Profile, error) {
	if len(b) == 0 {
		return nil, errors.New("empty profile")
	}
	if !IsGzip(b) {
		if maxDecompressed > 0 && len(b) > maxDecompressed {
			return nil, &SizeError{Limit: maxDecompressed, Size: len(b)}
		}
		return unmarshalProfile(b)
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
	// Decoding copies strings and byte slices out of its input, so the
	// pooled buffer can be reused afterwards.
	return unmarshalProfile(buf.Bytes())
}

// unmarshalProfile decodes with unmarshal, else (a malformed or unusual
// encoding) with UnmarshalVT, whose error it returns.
func unmarshalProfile(b []byte) (*googlev1.Profile, error) {
	p := new(googlev1.Profile)
	if unmarshal(p, b) == nil {
		return p, nil
	}
	p = new(googlev1.Profile)
	if err := p.UnmarshalVT(b); err != nil {
		return nil, fmt.Errorf("invalid pprof protobuf: %w", err)
	}
	return p, nil
}
