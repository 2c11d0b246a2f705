package compat

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-dev/hearth/ingester/store"
	"github.com/hearth-dev/hearth/ingester/wal"
	"github.com/hearth-dev/hearth/internal/formatver"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// recordAt returns the offset of record i of a WAL segment (16-byte headers:
// length at 0, version at 4, payload CRC at 8, header CRC at 12).
func recordAt(t *testing.T, seg []byte, i int) int {
	off := 0
	for ; i > 0; i-- {
		off += 16 + int(binary.LittleEndian.Uint32(seg[off:]))
		if off+16 > len(seg) {
			t.Fatal("the segment has fewer records")
		}
	}
	return off
}

// reseal recomputes the CRCs of the record at off.
func reseal(seg []byte, off int) {
	n := int(binary.LittleEndian.Uint32(seg[off:]))
	binary.LittleEndian.PutUint32(seg[off+8:], crc32.Checksum(seg[off+16:off+16+n], castagnoli))
	binary.LittleEndian.PutUint32(seg[off+12:], crc32.Checksum(seg[off:off+12], castagnoli))
}

// startRefused opens a store on data and requires the start to fail with an
// unsupported version of format f, naming want, counted once, with every file
// of the data directory as it was.
func startRefused(t *testing.T, data string, f formatver.Format, want string) {
	t.Helper()
	before := snapshot(t, data)
	refusedBefore := formatver.Refused(f)
	s, err := store.Open(store.Options{DataDir: data, WALPolicy: wal.PolicyOff, Logger: slog.New(slog.DiscardHandler)}, nil)
	if err == nil {
		s.Close()
		t.Fatal("the store started")
	}
	var fe *formatver.Error
	if !errors.As(err, &fe) || fe.Format.Name != f.Name || fe.Version != 2 {
		t.Fatalf("start failed with %v, want a refusal of %s version 2", err, f.Name)
	}
	for _, w := range []string{want, "version 2", "docs/upgrading.md"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("the error %q does not name %q", err, w)
		}
	}
	if got := formatver.Refused(f) - refusedBefore; got != 1 {
		t.Errorf("hearth_unsupported_format_version_total{format=%q} rose by %v, want 1", f.Name, got)
	}
	after := snapshot(t, data)
	if len(after) != len(before) {
		t.Fatalf("files before %d, after %d", len(before), len(after))
	}
	for p, b := range before {
		if after[p] != b {
			t.Fatalf("%s changed", p)
		}
	}
}

// TestFutureWALSegmentVersion: a segment record framed as version 2 (a newer
// release's WAL) stops the start: neither truncated as a torn tail nor
// skipped as corruption, whether it is the last record of the last segment,
// in the middle of it, or in a segment before it.
func TestFutureWALSegmentVersion(t *testing.T) {
	for _, c := range []struct {
		name string
		seg  string
		rec  func(seg []byte) int
	}{
		{"last record", "00000002.wal", func(seg []byte) int { return lastRecord(seg) }},
		{"first record", "00000002.wal", func([]byte) int { return 0 }},
		{"earlier segment", "00000001.wal", func([]byte) int { return 0 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			data := copyFixture(t, release, dataDir)
			if c.seg == "00000001.wal" {
				// Replay reads segments before the checkpoint too (skipping their records).
				if err := os.WriteFile(filepath.Join(data, "wal", "checkpoint"), []byte("1\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			path := filepath.Join(data, "wal", c.seg)
			seg, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			off := c.rec(seg)
			seg[off+4] = 2
			reseal(seg, off)
			if err := os.WriteFile(path, seg, 0o644); err != nil {
				t.Fatal(err)
			}
			startRefused(t, data, formatver.WALSegment, path)
		})
	}
}

func lastRecord(seg []byte) int {
	off, last := 0, 0
	for off+16 <= len(seg) {
		last = off
		off += 16 + int(binary.LittleEndian.Uint32(seg[off:]))
	}
	return last
}

// TestFutureWALSegmentAfterDamage: a torn tail followed by a record of
// version 2 is not truncated.
func TestFutureWALSegmentAfterDamage(t *testing.T) {
	data := copyFixture(t, release, dataDir)
	path := filepath.Join(data, "wal", "00000002.wal")
	seg, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	off := lastRecord(seg)
	last := append([]byte(nil), seg[off:]...)
	last[4] = 2
	reseal(last, 0)
	seg = append(seg[:off], make([]byte, 40)...) // zeros: a torn write
	seg = append(seg, last...)
	if err := os.WriteFile(path, seg, 0o644); err != nil {
		t.Fatal(err)
	}
	startRefused(t, data, formatver.WALSegment, path)
}

// TestFutureWALRecordVersion: a record whose payload (record.Encode) has
// version 2 stops the start; not skipped as a record that does not decode.
func TestFutureWALRecordVersion(t *testing.T) {
	data := copyFixture(t, release, dataDir)
	path := filepath.Join(data, "wal", "00000002.wal")
	seg, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	off := recordAt(t, seg, 1)
	if seg[off+16] != 1 {
		t.Fatalf("record version %d, want 1", seg[off+16])
	}
	seg[off+16] = 2
	reseal(seg, off)
	if err := os.WriteFile(path, seg, 0o644); err != nil {
		t.Fatal(err)
	}
	startRefused(t, data, formatver.WALRecord, path)
}

// TestFutureCheckpointVersion: a checkpoint starting with "version 2" stops
// the start (it cannot say which segments are in blocks).
func TestFutureCheckpointVersion(t *testing.T) {
	data := copyFixture(t, release, dataDir)
	path := filepath.Join(data, "wal", "checkpoint")
	if err := os.WriteFile(path, []byte("version 2\n2 blocks=7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	startRefused(t, data, formatver.Checkpoint, path)
}

// TestCheckpointVersions: version 1 as the first release writes it, and
// version 1 spelled out, both read.
func TestCheckpointVersions(t *testing.T) {
	for body, want := range map[string]uint64{"2\n": 2, "17": 17, "version 1\n5\n": 5} {
		path := filepath.Join(t.TempDir(), "checkpoint")
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if got, err := wal.ReadCheckpoint(path); err != nil || got != want {
			t.Errorf("%q: %d %v, want %d", body, got, err, want)
		}
	}
}
