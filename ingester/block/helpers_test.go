package block

import (
	"encoding/binary"

	"context"
	"fmt"
	"github.com/cespare/xxhash/v2"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/providers/filesystem"

	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/ingest"
	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/pprofdec"
	"github.com/hearth-dev/hearth/ingester/querier"
	"github.com/hearth-dev/hearth/ingester/symdb"
	"github.com/hearth-dev/hearth/ingester/tenant"
	"github.com/hearth-dev/hearth/internal/testutil"
)

var _ querier.Source = (*BucketSource)(nil)

const testTenant = tenant.Anonymous

type corpusProfile struct {
	name string
	p    *googlev1.Profile
}

// loadCorpus decodes the corpus files that the head accepts.
func loadCorpus(tb testing.TB) []corpusProfile {
	var out []corpusProfile
	for _, f := range testutil.Corpus(tb) {
		raw, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		p, err := pprofdec.DecodePprof(raw, 0)
		if err != nil {
			continue
		}
		if symdb.Validate(p) != nil {
			continue
		}
		out = append(out, corpusProfile{name: strings.Split(filepath.Base(f), ".")[0], p: p})
	}
	return out
}

// pushLoad appends n pushes like `hearth load`: the corpus in turn, each push
// re-stamped (base + i*step) with instance=i-<i mod series>.
func pushLoad(tb testing.TB, h *head.Head, corpus []corpusProfile, n, series int, base, step int64, rng *rand.Rand) {
	for i := 0; i < n; i++ {
		c := corpus[i%len(corpus)]
		ls := model.Labels{
			{Name: model.LabelProfileName, Value: ingest.ProfileName(c.p)},
			{Name: "instance", Value: fmt.Sprintf("i-%d", i%series)},
			{Name: model.LabelServiceName, Value: c.name},
		}.Sort()
		var id head.ProfileID
		for j := range id {
			id[j] = byte(rng.IntN(256))
		}
		if _, err := h.Append(testTenant, id, ls, c.p, base+int64(i)*step); err != nil {
			tb.Fatalf("append %s: %v", c.name, err)
		}
	}
}

// synthetic builds a random profile with nStacks stacks over a small universe of frames.
func synthetic(rng *rand.Rand, nStacks int, label string) *googlev1.Profile {
	p := &googlev1.Profile{StringTable: []string{"", "cpu", "nanoseconds", "samples", "count", "lbl"}}
	p.SampleType = []*googlev1.ValueType{{Type: 1, Unit: 2}, {Type: 3, Unit: 4}}
	p.PeriodType = &googlev1.ValueType{Type: 1, Unit: 2}
	p.Mapping = []*googlev1.Mapping{{Id: 1, Filename: int64(len(p.StringTable)), MemoryLimit: 1 << 30, HasFunctions: true}}
	p.StringTable = append(p.StringTable, "/bin/app")
	nf := 12
	for f := 1; f <= nf; f++ {
		p.Function = append(p.Function, &googlev1.Function{Id: uint64(f), Name: int64(len(p.StringTable)), Filename: int64(len(p.StringTable) + 1), StartLine: int64(f)})
		p.StringTable = append(p.StringTable, fmt.Sprintf("fn%d", f), fmt.Sprintf("file%d.go", f%3))
		p.Location = append(p.Location, &googlev1.Location{Id: uint64(f), MappingId: 1, Address: uint64(0x1000 + f*16),
			Line: []*googlev1.Line{{FunctionId: uint64(f), Line: int64(f * 10)}}})
	}
	if label != "" {
		p.StringTable = append(p.StringTable, label)
	}
	for s := 0; s < nStacks; s++ {
		depth := 1 + rng.IntN(6)
		sm := &googlev1.Sample{Value: []int64{rng.Int64N(1000) - 100, rng.Int64N(5)}}
		for d := 0; d < depth; d++ {
			sm.LocationId = append(sm.LocationId, uint64(1+rng.IntN(nf)))
		}
		if label != "" && rng.IntN(2) == 0 {
			sm.Label = []*googlev1.Label{{Key: 5, Str: int64(len(p.StringTable) - 1)}}
		}
		p.Sample = append(p.Sample, sm)
	}
	return p
}

// stackKey names a stack by content: per location leaf first, mapping file, address, lines.
func stackKey(sn *symdb.Snapshot, st uint32) string {
	var b strings.Builder
	for _, l := range sn.Stack(nil, st) {
		loc := sn.Locations[l]
		fmt.Fprintf(&b, "%s@%x", sn.Strings[sn.Mappings[loc.Mapping].Filename], loc.Address)
		for _, ln := range loc.Lines {
			f := sn.Functions[ln.Function]
			fmt.Fprintf(&b, "|%s/%s:%d:%d", sn.Strings[f.Name], sn.Strings[f.Filename], f.StartLine, ln.Line)
		}
		b.WriteByte(';')
	}
	return b.String()
}

// flatten renders a selection by content: series labels → rows (sorted by
// time, id) with id, time, total and a fingerprint of the samples resolved to
// stack content (xxhash of the sorted (stack content hash, value) pairs).
func flatten(tb testing.TB, sels ...head.Selection) map[string][]string {
	out := map[string][]string{}
	type pair struct {
		h uint64
		v int64
	}
	var pairs []pair
	var buf [16]byte
	for _, sel := range sels {
		memo := map[uint32]uint64{}
		for _, sr := range sel.Series {
			k := sr.Labels.String()
			for _, p := range sr.Profiles {
				pairs = pairs[:0]
				err := head.DecodeSamples(p.Samples, func(st uint32, v int64) {
					h, ok := memo[st]
					if !ok {
						h = xxhash.Sum64String(stackKey(sel.Symbols, st))
						memo[st] = h
					}
					pairs = append(pairs, pair{h, v})
				})
				if err != nil {
					tb.Fatal(err)
				}
				sort.Slice(pairs, func(i, j int) bool { return pairs[i].h < pairs[j].h })
				d := xxhash.New()
				for _, pr := range pairs {
					binary.LittleEndian.PutUint64(buf[:8], pr.h)
					binary.LittleEndian.PutUint64(buf[8:], uint64(pr.v))
					_, _ = d.Write(buf[:])
				}
				out[k] = append(out[k], fmt.Sprintf("%020d %x total=%d n=%d samples=%x", p.TimeNanos, p.ID, p.Total, len(pairs), d.Sum64()))
			}
			sort.Strings(out[k])
		}
	}
	return out
}

// countingBucket counts reads per object name.
type countingBucket struct {
	objstore.Bucket
	gets, ranges atomic.Int64
	mu           chan struct{}
	names        map[string]int
}

func newCounting(b objstore.Bucket) *countingBucket {
	c := &countingBucket{Bucket: b, mu: make(chan struct{}, 1), names: map[string]int{}}
	return c
}

func (c *countingBucket) note(name string) {
	c.mu <- struct{}{}
	c.names[name]++
	<-c.mu
}

func (c *countingBucket) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	c.gets.Add(1)
	c.note(name)
	return c.Bucket.Get(ctx, name)
}

func (c *countingBucket) GetRange(ctx context.Context, name string, off, n int64) (io.ReadCloser, error) {
	c.ranges.Add(1)
	c.note(name)
	return c.Bucket.GetRange(ctx, name, off, n)
}

func (c *countingBucket) touched(sub string) int {
	c.mu <- struct{}{}
	defer func() { <-c.mu }()
	n := 0
	for k, v := range c.names {
		if strings.Contains(k, sub) {
			n += v
		}
	}
	return n
}

func fsBucket(tb testing.TB, dir string) objstore.Bucket {
	b, err := filesystem.NewBucket(dir)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// writeTenant writes the whole tenant head as a block under root/<tenant>/.
func writeTenant(tb testing.TB, h *head.Head, root string, opts WriteOptions) Meta {
	th := h.Tenant(testTenant)
	sel := th.Select("", nil, -1<<63, 1<<63-1)
	opts.Tenant = testTenant
	m, err := Write(filepath.Join(root, testTenant), sel, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}
