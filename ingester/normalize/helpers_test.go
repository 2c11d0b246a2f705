package normalize

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"

	"github.com/hearth-dev/hearth/ingester/pprofdec"
)

// builder makes small profiles: stacks of function names, leaf first.
type builder struct {
	p     *googlev1.Profile
	strs  map[string]int64
	funcs map[string]uint64
}

func newBuilder(sampleTypes ...string) *builder {
	b := &builder{p: &googlev1.Profile{StringTable: []string{""}}, strs: map[string]int64{"": 0}, funcs: map[string]uint64{}}
	for _, st := range sampleTypes {
		typ, unit, _ := strings.Cut(st, "/")
		b.p.SampleType = append(b.p.SampleType, &googlev1.ValueType{Type: b.str(typ), Unit: b.str(unit)})
	}
	return b
}

func (b *builder) str(s string) int64 {
	if i, ok := b.strs[s]; ok {
		return i
	}
	b.strs[s] = int64(len(b.p.StringTable))
	b.p.StringTable = append(b.p.StringTable, s)
	return b.strs[s]
}

// loc returns the location of function name (one location per function).
func (b *builder) loc(name string) uint64 {
	if id, ok := b.funcs[name]; ok {
		return id
	}
	id := uint64(len(b.p.Function) + 1)
	b.p.Function = append(b.p.Function, &googlev1.Function{Id: id, Name: b.str(name), SystemName: b.str(name), Filename: b.str("main.go")})
	b.p.Location = append(b.p.Location, &googlev1.Location{Id: id, Line: []*googlev1.Line{{FunctionId: id, Line: 1}}})
	b.funcs[name] = id
	return id
}

// sample adds a sample; stack is leaf first.
func (b *builder) sample(values []int64, stack ...string) *googlev1.Sample {
	s := &googlev1.Sample{Value: values}
	for _, f := range stack {
		s.LocationId = append(s.LocationId, b.loc(f))
	}
	b.p.Sample = append(b.p.Sample, s)
	return s
}

// collapse sums sample type i per stack ("root;...;leaf"), as a flame graph
// shows it, leaving out zero totals.
func collapse(t testing.TB, p *googlev1.Profile, i int) map[string]int64 {
	t.Helper()
	fns := map[uint64]string{}
	for _, f := range p.Function {
		fns[f.Id] = p.StringTable[f.Name]
	}
	locs := map[uint64][]string{}
	for _, l := range p.Location {
		var names []string
		for _, ln := range l.Line {
			names = append(names, fns[ln.FunctionId])
		}
		slices.Reverse(names)
		locs[l.Id] = names
	}
	out := map[string]int64{}
	for _, s := range p.Sample {
		var frames []string
		for j := len(s.LocationId) - 1; j >= 0; j-- {
			l, ok := locs[s.LocationId[j]]
			if !ok {
				t.Fatalf("sample refers to missing location %d", s.LocationId[j])
			}
			frames = append(frames, l...)
		}
		out[strings.Join(frames, ";")] += s.Value[i]
	}
	for k, v := range out {
		if v == 0 {
			delete(out, k)
		}
	}
	return out
}

// pyroscopeFile reads a file of Pyroscope v1.18.0 from the mirror
// HEARTH_PYROSCOPE_REPO points at (a git directory), or skips.
func pyroscopeFile(t testing.TB, path string) []byte {
	t.Helper()
	repo := os.Getenv("HEARTH_PYROSCOPE_REPO")
	if repo == "" {
		t.Skip("Pyroscope's testdata: HEARTH_PYROSCOPE_REPO unset")
	}
	out, err := exec.Command("git", "-C", repo, "show", "v1.18.0:"+path).Output()
	if err != nil {
		t.Fatalf("git show v1.18.0:%s: %v", path, err)
	}
	return out
}

func pyroscopeProfile(t testing.TB, path string) *googlev1.Profile {
	t.Helper()
	p, err := pprofdec.DecodePprof(pyroscopeFile(t, path), 0)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return p
}

// stacksDigest is a SHA-256 of every sample type's collapsed stacks,
// sorted: equal digests, equal flame graphs.
func stacksDigest(t testing.TB, p *googlev1.Profile) string {
	h := sha256.New()
	for i := range p.SampleType {
		c := collapse(t, p, i)
		keys := slices.Sorted(maps.Keys(c))
		fmt.Fprintf(h, "type %d\n", i)
		for _, k := range keys {
			fmt.Fprintf(h, "%s %d\n", k, c[k])
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}
