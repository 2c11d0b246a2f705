package block

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
)

const seedMark = `{"version":1,"id":"01M88RNH3FH1313K3C0PVVB4HT","tenant":"t","marked_at":"2026-01-01T00:00:00Z","reason":"compacted","replaced_by":["01M88RNH3FH1313K3C0PVVB4HV"]}`

const seedIndex = `{"version":1,"tenant":"t","updated_at":"2026-01-01T00:00:00Z","blocks":[{"version":1,"ulid":"01M88RNH3FH1313K3C0PVVB4HT","tenant":"t","min_time_ns":1,"max_time_ns":2,"stats":{"series":1,"profiles":1,"samples":3},"files":[{"name":"index.bin","size":10},{"name":"profiles.parquet","size":100},{"name":"symbols.bin","size":20}],"compaction":{"level":1,"range_start_ns":0,"range_end_ns":10,"sources":["01M88RNH3FH1313K3C0PVVB4HV"]}}],"deletion_marks":[` + seedMark + `]}`

// FuzzParseDeletionMark: a mark parses into a valid mark or errors; what
// parses survives a round trip.
func FuzzParseDeletionMark(f *testing.F) {
	f.Add([]byte(seedMark))
	f.Add([]byte(`{"version":1,"id":"01M88RNH3FH1313K3C0PVVB4HT","tenant":"t","marked_at":"2026-01-01T00:00:00Z","reason":"retention"}`))
	f.Add([]byte(`{"version":1,"reason":"compacted"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseDeletionMark(b)
		if err != nil {
			return
		}
		if m.Reason == ReasonCompacted && len(m.ReplacedBy) == 0 {
			t.Fatal("a compacted mark without replacements parsed")
		}
		out, err := MarshalDeletionMark(m)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseDeletionMark(out); err != nil {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// FuzzParseIndex: a bucket index parses into valid metas and marks or errors.
func FuzzParseIndex(f *testing.F) {
	f.Add([]byte(seedIndex))
	f.Add([]byte(`{"version":1,"tenant":"t","updated_at":"2026-01-01T00:00:00Z","blocks":[null]}`))
	f.Add([]byte(`{"version":1,"tenant":"t","updated_at":"2026-01-01T00:00:00Z","blocks":[],"deletion_marks":[{"version":1}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ix, err := ParseIndex(b)
		if err != nil {
			return
		}
		for _, m := range ix.Blocks {
			if m.Tenant != ix.Tenant {
				t.Fatalf("block of tenant %q in the index of %q", m.Tenant, ix.Tenant)
			}
		}
		out, err := MarshalIndex(ix)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseIndex(out); err != nil {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func TestSuperseded(t *testing.T) {
	a, b, c := ulid.Make(), ulid.Make(), ulid.Make()
	now := time.Now()
	vis := map[ulid.ULID]*Meta{a: {}, b: {}}
	for _, tc := range []struct {
		name string
		d    *DeletionMark
		want bool
	}{
		{"not marked", nil, false},
		{"retention", &DeletionMark{ID: a, MarkedAt: now, Reason: ReasonRetention}, true},
		{"replacement visible", &DeletionMark{ID: a, MarkedAt: now, Reason: ReasonCompacted, ReplacedBy: []ulid.ULID{b}}, true},
		{"one of two replacements not visible yet", &DeletionMark{ID: a, MarkedAt: now, Reason: ReasonCompacted, ReplacedBy: []ulid.ULID{b, c}}, false},
	} {
		if got := Superseded(tc.d, vis); got != tc.want {
			t.Errorf("%s: superseded %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestSourceSkipsReplacedBlocks: a reader reads both a source and its
// replacement until the mark is seen, then only the replacement; with a
// fresh bucket index it takes metas and marks from it.
func TestSourceSkipsReplacedBlocks(t *testing.T) {
	root := t.TempDir()
	bkt := fsBucket(t, root)
	ctx := context.Background()
	src := writeTenant(t, oneProfileHead(t, 5000, "svc"), root, WriteOptions{})
	r, err := Open(ctx, bkt, testTenant+"/"+src.ULID.String()+"/", ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := Merge(ctx, root+"/"+testTenant, []*Reader{r}, MergeOptions{Tenant: testTenant, Compaction: Compaction{Level: 1, RangeStart: 0, RangeEnd: 10000, Sources: []ulid.ULID{src.ULID}}})
	if err != nil {
		t.Fatal(err)
	}
	s := &BucketSource{Bucket: bkt, SyncInterval: -1}
	ids := func() []ulid.ULID {
		ms, err := s.Blocks(ctx, testTenant)
		if err != nil {
			t.Fatal(err)
		}
		var out []ulid.ULID
		for _, m := range ms {
			out = append(out, m.ULID)
		}
		return out
	}
	if got := ids(); len(got) != 2 {
		t.Fatalf("before the mark: %v, want both blocks", got)
	}
	mark := &DeletionMark{Version: 1, ID: src.ULID, Tenant: testTenant, MarkedAt: time.Now(), Reason: ReasonCompacted, ReplacedBy: []ulid.ULID{out.ULID}}
	mb, _ := MarshalDeletionMark(mark)
	if err := bkt.Upload(ctx, DeletionMarkPath(testTenant, src.ULID), bytes.NewReader(mb)); err != nil {
		t.Fatal(err)
	}
	if got := ids(); len(got) != 1 || got[0] != out.ULID {
		t.Fatalf("after the mark: %v, want only %s", got, out.ULID)
	}
	if s.FromIndex(testTenant) {
		t.Fatal("no index was written, yet the source used one")
	}
	// A fresh index: a new reader takes metas and marks from it and reads no meta.json.
	ix := &Index{Version: 1, Tenant: testTenant, UpdatedAt: time.Now(), Blocks: []*Meta{&src, &out}, DeletionMarks: []*DeletionMark{mark}}
	ib, _ := MarshalIndex(ix)
	if err := bkt.Upload(ctx, IndexPath(testTenant), bytes.NewReader(ib)); err != nil {
		t.Fatal(err)
	}
	cb := newCounting(bkt)
	s = &BucketSource{Bucket: cb, SyncInterval: -1}
	if got := ids(); len(got) != 1 || got[0] != out.ULID {
		t.Fatalf("from the index: %v, want only %s", got, out.ULID)
	}
	if !s.FromIndex(testTenant) || cb.touched(MetaFile) != 0 || cb.touched(MarkersDir) != 0 {
		t.Fatalf("from the index: used %v, read meta.json %d times, marks %d times", s.FromIndex(testTenant), cb.touched(MetaFile), cb.touched(MarkersDir))
	}
	// A stale index is ignored.
	s = &BucketSource{Bucket: cb, SyncInterval: -1, Now: func() time.Time { return time.Now().Add(2 * time.Hour) }}
	if got := ids(); len(got) != 1 || s.FromIndex(testTenant) {
		t.Fatalf("stale index: %v, used %v", got, s.FromIndex(testTenant))
	}
}

// TestSourceRelistsWhenABlockIsGone: a block deleted after the source listed
// it makes the source list again and read what replaced it, not fail.
func TestSourceRelistsWhenABlockIsGone(t *testing.T) {
	root := t.TempDir()
	bkt := fsBucket(t, root)
	ctx := context.Background()
	src := writeTenant(t, oneProfileHead(t, 5000, "svc"), root, WriteOptions{})
	s := &BucketSource{Bucket: bkt, SyncInterval: time.Hour}
	if ms, err := s.Blocks(ctx, testTenant); err != nil || len(ms) != 1 {
		t.Fatalf("%d blocks, %v", len(ms), err)
	}
	r, err := Open(ctx, bkt, testTenant+"/"+src.ULID.String()+"/", ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := Merge(ctx, root+"/"+testTenant, []*Reader{r}, MergeOptions{Tenant: testTenant, Compaction: Compaction{Level: 1, RangeStart: 0, RangeEnd: 10000, Sources: []ulid.ULID{src.ULID}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{MetaFile, IndexFile, ProfilesFile, SymbolsFile} {
		if err := bkt.Delete(ctx, testTenant+"/"+src.ULID.String()+"/"+f); err != nil {
			t.Fatal(err)
		}
	}
	sels, err := s.Select(ctx, testTenant, "", nil, 0, 10000)
	if err != nil {
		t.Fatalf("a deleted block failed the query: %v", err)
	}
	rows := 0
	for _, sel := range sels {
		for _, sr := range sel.Series {
			rows += len(sr.Profiles)
		}
	}
	if rows != int(out.Stats.Profiles) || rows == 0 {
		t.Fatalf("%d rows after the relisting, the replacement has %d", rows, out.Stats.Profiles)
	}
}
