package usage

import (
	"io"
	"sync/atomic"
)

// Body counts the bytes read from a request body: what a request that is
// refused while being read, or has no Content-Length, was received with.
type Body struct {
	io.ReadCloser
	n atomic.Int64
}

// CountBody wraps rc (may be nil: nothing to read).
func CountBody(rc io.ReadCloser) *Body {
	if rc == nil {
		rc = io.NopCloser(eof{})
	}
	return &Body{ReadCloser: rc}
}

func (b *Body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// N is the bytes read so far.
func (b *Body) N() int { return int(b.n.Load()) }

type eof struct{}

func (eof) Read([]byte) (int, error) { return 0, io.EOF }
