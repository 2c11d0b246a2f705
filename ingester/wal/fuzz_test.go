package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"

	"github.com/hearth-dev/hearth/internal/formatver"
)

// fuzzSeeds are the seed inputs of FuzzReplay; they are also committed under
// testdata/fuzz/FuzzReplay (regenerate with HEARTH_WAL_WRITE_SEEDS=1 go test
// -run TestWriteFuzzSeeds).
func fuzzSeeds() map[string][]byte {
	var valid []byte
	for i, n := range []int{0, 1, 20, 100} {
		valid = appendRecord(valid, payload(i, n))
	}
	torn := bytes.Clone(valid[:len(valid)-30])
	corrupt := bytes.Clone(valid)
	corrupt[16+1+16+5] ^= 1 // inside the second record's payload
	zeroTail := append(bytes.Clone(valid), make([]byte, 64)...)
	huge := appendRecord(nil, []byte("abc"))
	hdr := make([]byte, headerSize)
	putHeader(hdr, nil)
	binary.LittleEndian.PutUint32(hdr[0:4], 0x7fffffff) // valid header, length past EOF
	binary.LittleEndian.PutUint32(hdr[12:16], crc32.Checksum(hdr[0:12], castagnoli))
	huge = append(huge, hdr...)
	huge = append(huge, "some bytes"...)
	// A record of version 2 (a newer release) after good ones, and after a torn write.
	future := appendRecord(nil, []byte("from a newer release"))
	future[4] = 2
	binary.LittleEndian.PutUint32(future[12:16], crc32.Checksum(future[0:12], castagnoli))
	newer := append(bytes.Clone(valid), future...)
	newerAfterTorn := append(append(bytes.Clone(valid), make([]byte, 40)...), future...)
	nested := appendRecord(nil, appendRecord(nil, []byte("inner")))
	nestedTorn := nested[:len(nested)-1]
	return map[string][]byte{
		"valid":       valid,
		"torn":        torn,
		"corrupt":     corrupt,
		"zero-tail":   zeroTail,
		"empty":       {},
		"huge-length": huge,
		"nested":      nested,
		"nested-torn": nestedTorn,
		"short":       valid[:7],
		"newer":       newer,
		"newer-torn":  newerAfterTorn,
	}
}

func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("HEARTH_WAL_WRITE_SEEDS") == "" {
		t.Skip("set HEARTH_WAL_WRITE_SEEDS=1 to regenerate testdata/fuzz/FuzzReplay")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzReplay")
	os.MkdirAll(dir, 0o755)
	for name, b := range fuzzSeeds() {
		for _, last := range []bool{true, false} {
			content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nbool(%v)\n", b, last)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%s-%v", name, last)), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// hasValidRecordAfter is the brute-force definition used to check the
// torn/corrupt classification.
func hasValidRecordAfter(data []byte, from int) bool {
	for off := from + 1; off+headerSize <= len(data); off++ {
		h, ok := parseHeader(data[off : off+headerSize])
		if !ok || int64(h.length) > int64(len(data)-off-headerSize) {
			continue
		}
		p := data[off+headerSize : off+headerSize+int(h.length)]
		var b []byte
		if bytes.Equal(appendRecord(b, p), data[off:off+headerSize+len(p)]) {
			return true
		}
	}
	return false
}

// FuzzReplay feeds arbitrary bytes to the record decoder, both in memory and
// through Replay on a real directory (as the last segment, or as a segment
// followed by a good one), and checks that:
//   - it never panics or fails (no I/O errors here);
//   - the records it returns re-encode to exactly the prefix it accepted;
//   - the torn/corrupt verdict matches the brute-force definition;
//   - Replay truncates exactly a torn tail of the last segment, never a
//     non-last segment, and the segment after damage is always replayed;
//   - replaying again is idempotent.
func FuzzReplay(f *testing.F) {
	for _, b := range fuzzSeeds() {
		f.Add(b, true)
		f.Add(b, false)
	}
	testSkipTruncateSync = true
	defer func() { testSkipTruncateSync = false }()
	f.Fuzz(func(t *testing.T, data []byte, last bool) {
		var recs [][]byte
		var offs []int64
		res, err := scanSegment(bytes.NewReader(data), int64(len(data)), 64, func(off int64, p []byte) error {
			recs = append(recs, bytes.Clone(p))
			offs = append(offs, off)
			return nil
		})
		var ve *versionError
		if errors.As(err, &ve) {
			// A record of another version: Replay refuses the segment and
			// leaves it as it was.
			dir := t.TempDir()
			if err := os.WriteFile(segPath(dir, 1), data, 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := Replay(dir, ReplayOptions{}, func(Pos, []byte) error { return nil }); !errors.Is(err, formatver.ErrUnsupported) {
				t.Fatalf("replay of a segment with version %d at %d: %v", ve.version, ve.off, err)
			}
			if b, err := os.ReadFile(segPath(dir, 1)); err != nil || !bytes.Equal(b, data) {
				t.Fatalf("refused segment changed (%v)", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("scan error: %v", err)
		}
		var re []byte
		for i, p := range recs {
			if offs[i] != int64(len(re)) {
				t.Fatalf("record %d at %d, want %d", i, offs[i], len(re))
			}
			re = appendRecord(re, p)
		}
		if int64(len(re)) != res.good || !bytes.Equal(re, data[:res.good]) {
			t.Fatalf("accepted prefix %d bytes does not re-encode (%d bytes)", res.good, len(re))
		}
		if res.records != int64(len(recs)) {
			t.Fatalf("records %d vs %d", res.records, len(recs))
		}
		if res.bad == badNone {
			if res.good != int64(len(data)) {
				t.Fatalf("no damage but stopped at %d of %d", res.good, len(data))
			}
		} else if len(data) <= 1<<12 {
			if want := !hasValidRecordAfter(data, int(res.good)); res.torn != want {
				t.Fatalf("torn=%v, brute force says %v (bad=%v at %d)", res.torn, want, res.bad, res.good)
			}
		}

		// Through Replay on files.
		dir := t.TempDir()
		if err := os.WriteFile(segPath(dir, 1), data, 0o644); err != nil {
			t.Fatal(err)
		}
		tail := []byte("the segment after")
		if !last {
			if err := os.WriteFile(segPath(dir, 2), appendRecord(nil, tail), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, st := replayAll(t, dir, ReplayOptions{})
		want := recs
		if !last {
			want = append(want[:len(want):len(want)], tail)
		}
		checkRecords(t, got, want, nil)
		size := fileSize(t, segPath(dir, 1))
		switch {
		case res.bad == badNone:
			if size != int64(len(data)) || st.TruncatedBytes != 0 || st.CorruptSegments != 0 {
				t.Fatalf("clean segment: size %d, stats %+v", size, st)
			}
		case last && res.torn:
			if size != res.good || st.TruncatedBytes != int64(len(data))-res.good || st.CorruptSegments != 0 {
				t.Fatalf("torn tail: size %d (good %d), stats %+v", size, res.good, st)
			}
		default:
			if size != int64(len(data)) || st.TruncatedBytes != 0 || st.CorruptSegments != 1 {
				t.Fatalf("corrupt: size %d, stats %+v", size, st)
			}
		}
		got2, st2 := replayAll(t, dir, ReplayOptions{})
		checkRecords(t, got2, want, nil)
		if st2.TruncatedBytes != 0 || st2.CorruptSegments != st.CorruptSegments {
			t.Fatalf("second replay not idempotent: %+v then %+v", st, st2)
		}
	})
}
