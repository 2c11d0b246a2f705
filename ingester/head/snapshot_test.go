package head

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"

	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/symdb"
)

// snapHead fills a head with pushes into two tenants: one series past
// dedupScanRows rows (bigRows, many packed blocks and aggregates), a few
// small ones (unpacked tails), retries of earlier ids.
func snapHead(t testing.TB) *Head {
	h := New(Options{})
	r := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < snapPushes; i++ {
		tenant, ls := "t1", base()
		switch i % 7 {
		case 1:
			ls = model.Labels{{Name: "__name__", Value: "process_cpu"}, {Name: "service_name", Value: "other"}}
		case 3:
			tenant = "t2"
		}
		id := ProfileID{byte(i), byte(i >> 8), 1}
		if i%19 == 4 {
			id = ProfileID{byte(i - 7), byte((i - 7) >> 8), 1} // a retry
		}
		if _, err := h.Append(tenant, id, ls, randomProfile(r), int64(i)*1e9); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

func snapshotBytes(t testing.TB, h *Head, meta SnapshotMeta) []byte {
	t.Helper()
	var buf bytes.Buffer
	st, err := WriteSnapshot(&buf, h, meta)
	if err != nil {
		t.Fatal(err)
	}
	if st.Bytes != int64(buf.Len()) {
		t.Fatalf("stats say %d bytes, wrote %d", st.Bytes, buf.Len())
	}
	return buf.Bytes()
}

func readSnapshotBytes(b []byte) (*Head, SnapshotMeta, SnapshotStats, error) {
	return ReadSnapshot(bytes.NewReader(b), int64(len(b)), Options{})
}

// requireSameHeads fails unless a and b hold the same tenants with the same
// counts, series (labels, in order), rows (ids, times, totals, encoded
// samples), aggregates and symbol tables, id for id.
func requireSameHeads(t *testing.T, got, want *Head) {
	t.Helper()
	if !slices.Equal(got.Tenants(), want.Tenants()) || len(want.Tenants()) == 0 {
		t.Fatalf("tenants %v, want %v", got.Tenants(), want.Tenants())
	}
	for _, name := range want.Tenants() {
		wt, gt := want.Tenant(name), got.Tenant(name)
		ws, gs := wt.Stats(), gt.Stats()
		ws.Bytes, gs.Bytes = 0, 0
		if ws != gs {
			t.Fatalf("tenant %s: stats %+v, want %+v", name, gs, ws)
		}
		wsel := wt.Select("", nil, math.MinInt64, math.MaxInt64)
		gsel := gt.Select("", nil, math.MinInt64, math.MaxInt64)
		wsy, gsy := wsel.Symbols, gsel.Symbols
		if !slices.Equal(wsy.Strings, gsy.Strings) || !slices.Equal(wsy.Mappings, gsy.Mappings) || !slices.Equal(wsy.Functions, gsy.Functions) ||
			!slices.Equal(wsy.Nodes, gsy.Nodes) || !slices.EqualFunc(wsy.Locations, gsy.Locations, func(a, b symdb.Location) bool {
			return a.Mapping == b.Mapping && a.Address == b.Address && a.IsFolded == b.IsFolded && slices.Equal(a.Lines, b.Lines)
		}) {
			t.Fatalf("tenant %s: the symbol tables differ", name)
		}
		if len(gsel.Series) != len(wsel.Series) {
			t.Fatalf("tenant %s: %d series, want %d", name, len(gsel.Series), len(wsel.Series))
		}
		for i := range wsel.Series {
			ws, gs := wsel.Series[i], gsel.Series[i]
			if !ws.Labels.Equal(gs.Labels) || len(ws.Profiles) != len(gs.Profiles) {
				t.Fatalf("tenant %s series %d: %v with %d rows, want %v with %d", name, i, gs.Labels, len(gs.Profiles), ws.Labels, len(ws.Profiles))
			}
			for j := range ws.Profiles {
				wp, gp := ws.Profiles[j], gs.Profiles[j]
				if wp.ID != gp.ID || wp.TimeNanos != gp.TimeNanos || wp.Total != gp.Total || !bytes.Equal(wp.Samples, gp.Samples) {
					t.Fatalf("tenant %s series %v row %d differs", name, ws.Labels, j)
				}
			}
			if len(ws.Aggregates) != len(gs.Aggregates) {
				t.Fatalf("tenant %s series %v: %d aggregates, want %d", name, ws.Labels, len(gs.Aggregates), len(ws.Aggregates))
			}
			for j := range ws.Aggregates {
				wa, ga := ws.Aggregates[j], gs.Aggregates[j]
				if wa.First != ga.First || wa.Rows != ga.Rows || !bytes.Equal(wa.Samples, ga.Samples) || !ga.Valid(gs.Profiles) {
					t.Fatalf("tenant %s series %v: aggregate %d differs", name, ws.Labels, j)
				}
			}
		}
	}
}

// TestSnapshotRoundTrip: a head written and read back is the same head, and
// it stays the same as the original under the same pushes after it: pushing
// again what it holds adds no row and no symbol (rows are deduplicated by
// (profile id, series), symbols interned by value without the keyed maps),
// and new pushes get the same ids in both.
func TestSnapshotRoundTrip(t *testing.T) {
	h := snapHead(t)
	if sel := h.Tenant("t1").Select("", nil, math.MinInt64, math.MaxInt64); len(sel.Series[0].Profiles) <= dedupScanRows || len(sel.Series[0].Aggregates) == 0 {
		t.Fatalf("the test head lacks a series past %d rows with aggregates", dedupScanRows)
	}
	meta := SnapshotMeta{WALSegment: 7, HeadStart: 3, CreatedNano: 42}
	b := snapshotBytes(t, h, meta)
	got, gotMeta, st, err := readSnapshotBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	if gotMeta != meta {
		t.Fatalf("meta %+v, want %+v", gotMeta, meta)
	}
	if st.Tenants != 2 || st.Rows != h.Tenant("t1").Stats().Profiles+h.Tenant("t2").Stats().Profiles || st.Bytes != int64(len(b)) {
		t.Fatalf("stats %+v", st)
	}
	requireSameHeads(t, got, h)
	for _, name := range h.Tenants() {
		if w, g := h.Tenant(name).Bytes(), got.Tenant(name).Bytes(); g < w*9/10 || g > w*11/10 {
			t.Errorf("tenant %s: %d bytes restored, %d in the original", name, g, w)
		}
	}

	// The same pushes again: all duplicates, no new symbol.
	before := map[string]*symdb.Snapshot{}
	for _, name := range got.Tenants() {
		before[name] = got.Tenant(name).syms.Snapshot()
	}
	r := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < snapPushes; i++ {
		tenant, ls := "t1", base()
		switch i % 7 {
		case 1:
			ls = model.Labels{{Name: "__name__", Value: "process_cpu"}, {Name: "service_name", Value: "other"}}
		case 3:
			tenant = "t2"
		}
		id := ProfileID{byte(i), byte(i >> 8), 1}
		if i%19 == 4 {
			id = ProfileID{byte(i - 7), byte((i - 7) >> 8), 1}
		}
		res, err := got.Append(tenant, id, ls, randomProfile(r), int64(i)*1e9)
		if err != nil {
			t.Fatal(err)
		}
		if res.Rows != 0 || res.NewSeries != 0 {
			t.Fatalf("push %d again after the restore: %+v, want only duplicates", i, res)
		}
	}
	for _, name := range got.Tenants() {
		a, b := before[name], got.Tenant(name).syms.Snapshot()
		if len(a.Strings) != len(b.Strings) || len(a.Mappings) != len(b.Mappings) || len(a.Functions) != len(b.Functions) ||
			len(a.Locations) != len(b.Locations) || len(a.Nodes) != len(b.Nodes) {
			t.Fatalf("tenant %s: pushing the same profiles again added symbols", name)
		}
	}
	requireSameHeads(t, got, h)

	// New pushes (new stacks too) give both heads the same rows and ids.
	r = rand.New(rand.NewPCG(8, 9))
	for i := range 40 {
		p := randomProfile(r)
		p.StringTable = append(p.StringTable, "new")
		p.Function = append(p.Function, &googlev1.Function{Id: 100, Name: int64(len(p.StringTable) - 1)})
		p.Location = append(p.Location, &googlev1.Location{Id: 100, Line: []*googlev1.Line{{FunctionId: 100, Line: 9}}})
		p.Sample[0].LocationId = append(p.Sample[0].LocationId, 100)
		for _, hh := range []*Head{h, got} {
			if _, err := hh.Append("t1", ProfileID{byte(i), 9}, base(), p.CloneVT(), int64(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	requireSameHeads(t, got, h)
}

// TestSnapshotDamage: every truncation and a flipped bit anywhere is an
// error, never a head, never a panic.
func TestSnapshotDamage(t *testing.T) {
	b := snapshotBytes(t, snapHead(t), SnapshotMeta{WALSegment: 2, HeadStart: 1})
	step := max(1, len(b)/300)
	for n := 0; n < len(b); n += step {
		if h, _, _, err := readSnapshotBytes(b[:n]); err == nil || h != nil {
			t.Fatalf("cut at %d of %d bytes: read without error", n, len(b))
		}
	}
	for i := 0; i < len(b); i += step {
		c := bytes.Clone(b)
		c[i] ^= 1 << (i % 8)
		if h, _, _, err := readSnapshotBytes(c); err == nil || h != nil {
			t.Fatalf("bit flipped at %d of %d bytes: read without error", i, len(b))
		}
	}
	if _, _, _, err := readSnapshotBytes(append(bytes.Clone(b), 0)); err == nil {
		t.Fatal("a byte after the end: read without error")
	}
}

func TestSnapshotOtherVersion(t *testing.T) {
	b := snapshotBytes(t, snapHead(t), SnapshotMeta{})
	binary.LittleEndian.PutUint32(b[8:], SnapshotVersion+1)
	binary.LittleEndian.PutUint32(b[12:], crc32.Checksum(b[:12], crcTable))
	if _, _, _, err := readSnapshotBytes(b); !errors.Is(err, ErrSnapshotVersion) {
		t.Fatalf("version %d: %v, want ErrSnapshotVersion", SnapshotVersion+1, err)
	}
}

// fixCRCs rewrites the header's and every section's CRC, so that a fuzzed
// file reaches the decoders behind them.
func fixCRCs(b []byte) {
	if len(b) < 16 {
		return
	}
	binary.LittleEndian.PutUint32(b[12:], crc32.Checksum(b[:12], crcTable))
	for off := 16; off+9+4 <= len(b); {
		n := binary.LittleEndian.Uint64(b[off+1:])
		if n > uint64(len(b)-off-9-4) {
			return
		}
		end := off + 9 + int(n)
		binary.LittleEndian.PutUint32(b[end:], crc32.Checksum(b[off:end], crcTable))
		off = end + 4
	}
}

// FuzzReadSnapshot: any file is a head or an error, never a panic (the CRCs
// are fixed up, so the fuzzer reaches the section decoders).
func FuzzReadSnapshot(f *testing.F) {
	h := New(Options{})
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 20 {
		if _, err := h.Append("t", ProfileID{byte(i)}, base(), randomProfile(r), int64(i)); err != nil {
			f.Fatal(err)
		}
	}
	f.Add(snapshotBytes(f, h, SnapshotMeta{WALSegment: 2, HeadStart: 1}))
	f.Add(snapshotBytes(f, New(Options{}), SnapshotMeta{}))
	f.Fuzz(func(t *testing.T, b []byte) {
		b = bytes.Clone(b)
		fixCRCs(b)
		got, _, _, err := readSnapshotBytes(b)
		if err != nil {
			return
		}
		// A head read without error is usable: select every tenant's rows.
		for _, name := range got.Tenants() {
			got.Tenant(name).Select("", nil, math.MinInt64, math.MaxInt64)
		}
	})
}

// snapPushes puts more than dedupScanRows rows in snapHead's first series.
const snapPushes = dedupScanRows * 3 / 2

// BenchmarkWriteSnapshot writes a head of 900 series of 40 rows each (the
// standard load's shape after a minute) to io.Discard: what a snapshot
// allocates besides the file, every few seconds under load.
func BenchmarkWriteSnapshot(b *testing.B) {
	h := New(Options{})
	r := rand.New(rand.NewPCG(7, 8))
	for i := 0; i < 900*40; i++ {
		ls := model.Labels{{Name: "__name__", Value: "process_cpu"}, {Name: "service_name", Value: "svc"}, {Name: "series", Value: string(rune('a'+i%26)) + string(rune('a'+i/26%35))}}
		if _, err := h.Append("t1", ProfileID{byte(i), byte(i >> 8), byte(i >> 16), 1}, ls, randomProfile(r), int64(i)*1e9); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		st, err := WriteSnapshot(io.Discard, h, SnapshotMeta{})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(st.Bytes), "snapshot-bytes")
	}
}
