package block

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
	"time"

	"connectrpc.com/connect"
	querierv1 "github.com/grafana/pyroscope/api/gen/proto/go/querier/v1"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"
	"google.golang.org/protobuf/proto"

	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/querier"
)

// TestQuerierHeadVsBlock: a querier over the head and one over the block
// written from it answer every method identically.
func TestQuerierHeadVsBlock(t *testing.T) {
	corpus := loadCorpus(t)
	if corpus == nil {
		return
	}
	rng := rand.New(rand.NewPCG(5, 6))
	h := head.New(head.Options{})
	base := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC).UnixNano()
	pushLoad(t, h, corpus, 2*len(corpus), 3, base, int64(7*time.Second), rng)
	root := t.TempDir()
	writeTenant(t, h, root, WriteOptions{RowGroupRows: 16})
	hq := &querier.Service{Sources: []querier.Source{querier.HeadSource{Head: h}}}
	bq := &querier.Service{Sources: []querier.Source{&BucketSource{Bucket: fsBucket(t, root)}}}
	ctx := context.Background()
	startMs, endMs := base/1e6, base/1e6+int64(2*len(corpus))*7000
	midMs := (startMs + endMs) / 2

	same := func(what string, a, b proto.Message, errA, errB error) {
		t.Helper()
		if (errA == nil) != (errB == nil) {
			t.Fatalf("%s: head err %v, block err %v", what, errA, errB)
		}
		if errA == nil && !proto.Equal(a, b) {
			t.Fatalf("%s: head and block answers differ", what)
		}
	}
	ptResp, err := hq.ProfileTypes(ctx, connect.NewRequest(&querierv1.ProfileTypesRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	bpt, err := bq.ProfileTypes(ctx, connect.NewRequest(&querierv1.ProfileTypesRequest{}))
	same("ProfileTypes", ptResp.Msg, bpt.Msg, err, err)
	if len(ptResp.Msg.ProfileTypes) == 0 {
		t.Fatal("no profile types")
	}
	selectors := []string{`{}`, `{instance="i-1"}`, `{service_name=~"cpu.*"}`}
	ranges := [][2]int64{{startMs, endMs}, {startMs, midMs}, {midMs + 1, endMs + 1000}}
	compared := 0
	for i, pt := range ptResp.Msg.ProfileTypes {
		for j, sel := range selectors {
			rg := ranges[(i+j)%len(ranges)]
			a, errA := hq.SelectMergeProfile(ctx, connect.NewRequest(&querierv1.SelectMergeProfileRequest{ProfileTypeID: pt.ID, LabelSelector: sel, Start: rg[0], End: rg[1]}))
			b, errB := bq.SelectMergeProfile(ctx, connect.NewRequest(&querierv1.SelectMergeProfileRequest{ProfileTypeID: pt.ID, LabelSelector: sel, Start: rg[0], End: rg[1]}))
			same("SelectMergeProfile "+pt.ID+sel, msg(a), msg(b), errA, errB)
			if errA == nil && len(a.Msg.Sample) > 0 {
				compared++
			}
			fa, errA := hq.SelectMergeStacktraces(ctx, connect.NewRequest(&querierv1.SelectMergeStacktracesRequest{ProfileTypeID: pt.ID, LabelSelector: sel, Start: rg[0], End: rg[1]}))
			fb, errB := bq.SelectMergeStacktraces(ctx, connect.NewRequest(&querierv1.SelectMergeStacktracesRequest{ProfileTypeID: pt.ID, LabelSelector: sel, Start: rg[0], End: rg[1]}))
			if (errA == nil) != (errB == nil) || (errA == nil && !reflect.DeepEqual(canonFlame(fa.Msg.Flamegraph), canonFlame(fb.Msg.Flamegraph))) {
				t.Fatalf("SelectMergeStacktraces %s%s: head and block differ (%v, %v)", pt.ID, sel, errA, errB)
			}
			sa, errA := hq.SelectSeries(ctx, connect.NewRequest(&querierv1.SelectSeriesRequest{ProfileTypeID: pt.ID, LabelSelector: sel, Start: rg[0], End: rg[1], Step: 15, GroupBy: []string{"instance"}}))
			sb, errB := bq.SelectSeries(ctx, connect.NewRequest(&querierv1.SelectSeriesRequest{ProfileTypeID: pt.ID, LabelSelector: sel, Start: rg[0], End: rg[1], Step: 15, GroupBy: []string{"instance"}}))
			same("SelectSeries "+pt.ID+sel, msg(sa), msg(sb), errA, errB)
		}
	}
	for _, sel := range selectors {
		for _, rg := range ranges {
			ln, errA := hq.LabelNames(ctx, connect.NewRequest(&typesv1.LabelNamesRequest{Matchers: []string{sel}, Start: rg[0], End: rg[1]}))
			lb, errB := bq.LabelNames(ctx, connect.NewRequest(&typesv1.LabelNamesRequest{Matchers: []string{sel}, Start: rg[0], End: rg[1]}))
			same("LabelNames", msg(ln), msg(lb), errA, errB)
			va, errA := hq.LabelValues(ctx, connect.NewRequest(&typesv1.LabelValuesRequest{Name: "service_name", Matchers: []string{sel}, Start: rg[0], End: rg[1]}))
			vb, errB := bq.LabelValues(ctx, connect.NewRequest(&typesv1.LabelValuesRequest{Name: "service_name", Matchers: []string{sel}, Start: rg[0], End: rg[1]}))
			same("LabelValues", msg(va), msg(vb), errA, errB)
			sa, errA := hq.Series(ctx, connect.NewRequest(&querierv1.SeriesRequest{Matchers: []string{sel}, Start: rg[0], End: rg[1]}))
			sb, errB := bq.Series(ctx, connect.NewRequest(&querierv1.SeriesRequest{Matchers: []string{sel}, Start: rg[0], End: rg[1]}))
			same("Series", msg(sa), msg(sb), errA, errB)
		}
	}
	if compared < len(ptResp.Msg.ProfileTypes) {
		t.Fatalf("only %d non-empty merges for %d profile types", compared, len(ptResp.Msg.ProfileTypes))
	}
	// Head and block together count every profile once.
	both := &querier.Service{Sources: []querier.Source{querier.HeadSource{Head: h}, &BucketSource{Bucket: fsBucket(t, root)}}}
	for _, pt := range ptResp.Msg.ProfileTypes[:3] {
		req := &querierv1.SelectMergeProfileRequest{ProfileTypeID: pt.ID, LabelSelector: "{}", Start: startMs, End: endMs}
		a, errA := hq.SelectMergeProfile(ctx, connect.NewRequest(req))
		b, errB := both.SelectMergeProfile(ctx, connect.NewRequest(req))
		if errA != nil || errB != nil || total(a.Msg.Sample) != total(b.Msg.Sample) {
			t.Fatalf("head+block: %v %v", errA, errB)
		}
	}
}

func msg[T any](r *connect.Response[T]) proto.Message {
	if r == nil {
		return nil
	}
	return any(r.Msg).(proto.Message)
}

func total[S interface{ GetValue() []int64 }](ss []S) int64 {
	var n int64
	for _, s := range ss {
		for _, v := range s.GetValue() {
			n += v
		}
	}
	return n
}

// canonFlame renders a flame graph independently of its name table order
// (the querier builds names in map order): per level, the sorted
// (name, total, self) triples.
func canonFlame(fg *querierv1.FlameGraph) []string {
	out := []string{fmt.Sprintf("total=%d maxself=%d", fg.Total, fg.MaxSelf)}
	for i, l := range fg.Levels {
		var items []string
		for j := 0; j+3 < len(l.Values); j += 4 {
			items = append(items, fmt.Sprintf("%s/%d/%d", fg.Names[l.Values[j+3]], l.Values[j+1], l.Values[j+2]))
		}
		sort.Strings(items)
		out = append(out, fmt.Sprint(i, items))
	}
	return out
}

func oneProfileHead(t *testing.T, ts int64, svc string) *head.Head {
	rng := rand.New(rand.NewPCG(uint64(ts), 1))
	h := head.New(head.Options{})
	ls := model.Labels{{Name: model.LabelProfileName, Value: "process_cpu"}, {Name: model.LabelServiceName, Value: svc}}.Sort()
	if _, err := h.Append(testTenant, head.ProfileID{byte(ts), byte(ts >> 8)}, ls, synthetic(rng, 8, ""), ts); err != nil {
		t.Fatal(err)
	}
	return h
}

// TestTimePruning: blocks outside the query range are pruned by meta.json;
// none of their other files is read.
func TestTimePruning(t *testing.T) {
	root := t.TempDir()
	var metas []Meta
	for i := int64(0); i < 3; i++ {
		metas = append(metas, writeTenant(t, oneProfileHead(t, 1000+i*1000, "a"), root, WriteOptions{}))
	}
	cb := newCounting(fsBucket(t, root))
	src := &BucketSource{Bucket: cb}
	ctx := context.Background()
	sels, err := src.Select(ctx, testTenant, "", nil, 1900, 2100)
	if err != nil {
		t.Fatal(err)
	}
	if len(sels) != 1 || len(sels[0].Series) != 2 || sels[0].Series[0].Profiles[0].TimeNanos != 2000 {
		t.Fatalf("got %+v", sels)
	}
	for _, i := range []int{0, 2} {
		id := metas[i].ULID.String()
		if n := cb.touched(id); n != 1 || cb.touched(id+"/"+MetaFile) != 1 {
			t.Fatalf("pruned block %s: %d reads (want only its meta.json)", id, n)
		}
	}
	if cb.touched(metas[1].ULID.String()+"/"+ProfilesFile) == 0 {
		t.Fatal("the block in range was not read")
	}
	// Labels queries prune the same way.
	if _, err := src.SeriesLabels(ctx, testTenant, nil, 2900, 3100); err != nil {
		t.Fatal(err)
	}
	if n := cb.touched(metas[0].ULID.String()); n != 1 {
		t.Fatalf("block 0: %d reads", n)
	}
	// A second query reuses the cached list, metas, reader and symbols.
	before := cb.gets.Load() + cb.ranges.Load()
	if _, err := src.Select(ctx, testTenant, "", nil, 1900, 2100); err != nil {
		t.Fatal(err)
	}
	if d := cb.gets.Load() + cb.ranges.Load() - before; d > 2 {
		t.Fatalf("repeat query made %d reads", d)
	}
}

func TestIncompleteBlockIgnored(t *testing.T) {
	root := t.TempDir()
	m1 := writeTenant(t, oneProfileHead(t, 1000, "a"), root, WriteOptions{})
	m2 := writeTenant(t, oneProfileHead(t, 2000, "b"), root, WriteOptions{})
	if err := os.Remove(filepath.Join(root, testTenant, m2.ULID.String(), MetaFile)); err != nil {
		t.Fatal(err)
	}
	// A leftover temp directory of a crashed write.
	if err := os.MkdirAll(filepath.Join(root, testTenant, m2.ULID.String()+".tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	src := &BucketSource{Bucket: fsBucket(t, root), SyncInterval: -1}
	ctx := context.Background()
	metas, err := src.Blocks(ctx, testTenant)
	if err != nil {
		t.Fatal(err)
	}
	if len(metas) != 1 || metas[0].ULID != m1.ULID {
		t.Fatalf("blocks %v", metas)
	}
	ls, err := src.SeriesLabels(ctx, testTenant, nil, 0, 1<<62)
	if err != nil || len(ls) != 2 || ls[0].Get(model.LabelServiceName) != "a" {
		t.Fatalf("labels %v %v", ls, err)
	}
	// Once meta.json arrives, the next sync sees the block.
	mb, _ := MarshalMeta(&m2)
	if err := os.WriteFile(filepath.Join(root, testTenant, m2.ULID.String(), MetaFile), mb, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := src.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if metas, _ = src.Blocks(ctx, testTenant); len(metas) != 2 {
		t.Fatalf("after sync: %d blocks", len(metas))
	}
	// A deleted block disappears.
	if err := os.RemoveAll(filepath.Join(root, testTenant, m1.ULID.String())); err != nil {
		t.Fatal(err)
	}
	if metas, _ = src.Blocks(ctx, testTenant); len(metas) != 1 || metas[0].ULID != m2.ULID {
		t.Fatalf("after delete: %v", metas)
	}
}

// TestCorruptFiles: damaged files give an error wrapping ErrCorrupt (or a
// read error), never a panic.
func TestCorruptFiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, name := range []string{MetaFile, IndexFile, SymbolsFile, ProfilesFile} {
		for _, mode := range []string{"truncate", "flip", "empty"} {
			root := t.TempDir()
			h := head.New(head.Options{})
			for i := 0; i < 20; i++ {
				ls := model.Labels{{Name: model.LabelProfileName, Value: "process_cpu"}, {Name: model.LabelServiceName, Value: "s"}}.Sort()
				if _, err := h.Append(testTenant, head.ProfileID{byte(i)}, ls, synthetic(rng, 30, ""), int64(i)); err != nil {
					t.Fatal(err)
				}
			}
			m := writeTenant(t, h, root, WriteOptions{Compression: nil})
			p := filepath.Join(root, testTenant, m.ULID.String(), name)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			switch mode {
			case "truncate":
				b = b[:len(b)/2]
			case "flip":
				for k := 0; k < 8; k++ {
					b[len(b)/4+rng.IntN(len(b)/2)] ^= 0x5a
				}
			case "empty":
				b = nil
			}
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			src := &BucketSource{Bucket: fsBucket(t, root)}
			_, err = src.Select(context.Background(), testTenant, "", nil, 0, 1<<62)
			switch {
			case name == ProfilesFile && mode == "flip":
				// parquet pages carry no checksum here: a flip may go unnoticed in a value, but must not panic.
				t.Logf("%s %s: %v", name, mode, err)
			case err == nil:
				t.Errorf("%s %s: no error", name, mode)
			case name != MetaFile && !errors.Is(err, ErrCorrupt):
				t.Errorf("%s %s: error does not wrap ErrCorrupt: %v", name, mode, err)
			}
		}
	}
}
