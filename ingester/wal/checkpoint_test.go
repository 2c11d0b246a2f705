package wal

import (
	"errors"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/hearth-dev/hearth/internal/formatver"
)

func TestCheckpointRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "checkpoint")
	if seg, err := ReadCheckpoint(path); err != nil || seg != 0 {
		t.Fatalf("missing checkpoint: %d %v", seg, err)
	}
	if err := WriteCheckpoint(path, 42); err != nil {
		t.Fatal(err)
	}
	if seg, err := ReadCheckpoint(path); err != nil || seg != 42 {
		t.Fatalf("%d %v", seg, err)
	}
	if _, err := parseCheckpoint("c", "version 3\n42\n"); !errors.Is(err, formatver.ErrUnsupported) {
		t.Fatalf("version 3: %v", err)
	}
	if _, err := parseCheckpoint("c", "forty-two\n"); err == nil || errors.Is(err, formatver.ErrUnsupported) {
		t.Fatalf("garbage: %v", err)
	}
}

// FuzzParseCheckpoint: any content either parses to the index that
// WriteCheckpoint's form of it gives back, or is refused; never a panic.
func FuzzParseCheckpoint(f *testing.F) {
	for _, s := range []string{"2\n", "0", "version 1\n5\n", "version 2\n5\n", "version x\n", "18446744073709551616\n", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		seg, err := parseCheckpoint("c", s)
		if err != nil {
			return
		}
		again, err := parseCheckpoint("c", strconv.FormatUint(seg, 10)+"\n")
		if err != nil || again != seg {
			t.Fatalf("%q read as %d, written back reads %d %v", s, seg, again, err)
		}
	})
}
