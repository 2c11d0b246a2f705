package ingest

import (
	"errors"
	"fmt"
	"math"
	"mime"
	"unicode/utf8"

	"github.com/hearth-dev/hearth/ingester/ingest/speedscope"
	"github.com/hearth-dev/hearth/ingester/ingest/trie"
)

// UnprocessableError is a body its format's parser cannot read (a
// malformed speedscope file, trie or tree): the HTTP layer answers 422, as
// Pyroscope does for a profile it fails to convert.
type UnprocessableError struct{ Err error }

func (e *UnprocessableError) Error() string { return e.Err.Error() }
func (e *UnprocessableError) Unwrap() error { return e.Err }

func unprocessablef(format string, args ...any) error {
	return &UnprocessableError{fmt.Errorf(format, args...)}
}

// contentTypeFormat applies the content types the older agents send
// instead of a format parameter. As in Pyroscope, binary/octet-stream+trie
// means trie whatever the format parameter, then format=tree or
// binary/octet-stream+tree means tree.
func contentTypeFormat(f Format, contentType string) Format {
	mt, _, err := mime.ParseMediaType(contentType)
	switch {
	case err == nil && mt == "binary/octet-stream+trie":
		return FormatTrie
	case err == nil && mt == "binary/octet-stream+tree":
		return FormatTree
	}
	return f
}

// setSpeedscope converts a speedscope file: one Decoded per profile, with
// its __name__ and, when the file names it, profile_name.
func (r *Request) setSpeedscope(data []byte) error {
	t, d := r.timeRange()
	ps, err := speedscope.Convert(data, speedscope.Options{AppName: r.AppName, SampleRate: r.SampleRate, TimeNanos: t, DurationNanos: d})
	if err != nil {
		return &UnprocessableError{fmt.Errorf("speedscope profile: %w", err)}
	}
	r.Profiles = make([]Decoded, 0, len(ps)) // non-nil: a file without profiles stores nothing
	for _, p := range ps {
		labels := []LabelPair{{Name: "__name__", Value: p.Metric}}
		if p.Name != "" {
			labels = append(labels, LabelPair{Name: "profile_name", Value: p.Name})
		}
		r.Profiles = append(r.Profiles, Decoded{Profile: p.Profile, Labels: labels})
	}
	return nil
}

// maxTrieStackBytes bounds the stacks a trie or tree expands to: a few
// bytes of deep nesting can name very long stacks.
const maxTrieStackBytes = 64 << 20

// errStop ends a trie walk from inside the callback.
var errStop = errors.New("stop")

// setTrie converts a trie or tree: its stacks become a profile exactly as
// folded text with the same stacks would (Pyroscope reads all three into
// one call tree).
func (r *Request) setTrie(data []byte) error {
	kind, err := r.ogKind()
	if err != nil {
		return err
	}
	t, d := r.timeRange()
	b := newFoldedBuilder(kind, t, d)
	read, what := trie.Trie, "trie"
	if r.Format == FormatTree {
		read, what = trie.Tree, "tree"
	}
	total := 0
	var stackErr error
	err = read(data, func(stack []byte, v uint64) error {
		total += len(stack)
		switch {
		case total > maxTrieStackBytes:
			stackErr = unprocessablef("%s profile: its stacks add up to more than %d bytes", what, maxTrieStackBytes)
		case v > math.MaxInt64:
			stackErr = unprocessablef("%s profile: stack %q has value %d, more than %d", what, clip(string(stack)), v, int64(math.MaxInt64))
		case !utf8.Valid(stack):
			stackErr = badf("%s profile: stack %q is not valid UTF-8", what, clip(string(stack)))
		}
		if stackErr == nil {
			if err := b.add(string(stack), int64(v)); err != nil {
				stackErr = badf("%s profile: %w", what, err)
			}
		}
		if stackErr != nil {
			return errStop
		}
		return nil
	})
	switch {
	case stackErr != nil:
		return stackErr
	case err != nil:
		return unprocessablef("%s profile: %w", what, err)
	}
	r.Profiles = []Decoded{{Profile: b.p, Labels: ogLabels(kind)}}
	return nil
}
