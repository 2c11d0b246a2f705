package normalize

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"unsafe"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
)

// spyLanguages are the languages Pyroscope reads from a pyroscope_spy label.
var spyLanguages = map[string]string{
	"dotnetspy": "dotnet", "gospy": "go", "phpspy": "php", "pyspy": "python", "rbspy": "ruby",
	"nodespy": "nodejs", "javaspy": "java", "grafana-agent.java": "java", "pyroscope-rs": "rust",
}

// languageMarks are the string prefixes or suffixes Pyroscope recognises a
// profile's language by, when the spy does not say.
var languageMarks = []struct {
	lang  string
	marks []string
}{
	{"go", []string{".go", "/usr/local/go/"}},
	{"java", []string{"java/", "sun/"}},
	{"ruby", []string{".rb", "gems/"}},
	{"nodejs", []string{"./node_modules/", ".js"}},
	{"dotnet", []string{"System.", "Microsoft."}},
	{"python", []string{".py"}},
	{"rust", []string{"main.rs", "core.rs"}},
}

// Language is the profile's language as Pyroscope guesses it: from the spy
// name (the pyroscope_spy label of /ingest requests), else from the first
// string of the profile that starts or ends like a file or package of a
// language (.go, java/, .rb, .js, System., .py, main.rs, ...); "unknown"
// otherwise.
func Language(spyName string, p *googlev1.Profile) string {
	if l, ok := spyLanguages[spyName]; ok {
		return l
	}
	for _, s := range p.StringTable {
		if s == "" {
			continue
		}
		for _, lm := range languageMarks {
			for _, m := range lm.marks {
				if strings.HasPrefix(s, m) || strings.HasSuffix(s, m) {
					return lm.lang
				}
			}
		}
	}
	return "unknown"
}

// FixGo applies the Go repairs Config enables to a profile of the Go
// runtime (Language "go"), on every path, as Pyroscope does: type
// parameters dropped from function names, then truncated stacks repaired.
// For the Go SDK, Grafana Alloy's Go scraping and any pprof from
// runtime/pprof.
func FixGo(p *googlev1.Profile, c Config) bool {
	changed := false
	if c.GoTypeParameters {
		changed = DropGoTypeParameters(p)
	}
	if c.GoStackRepair && MayHaveTruncatedGoStacks(p) {
		changed = RepairTruncatedGoStacks(p) || changed
	}
	return changed
}

const goShape = "[go.shape."

// dropTypeParameters removes, on each line of s, everything from the first
// "[go.shape." to the last "]" after it.
func dropTypeParameters(s string) string {
	if !strings.Contains(s, goShape) {
		return s
	}
	var b strings.Builder
	rest := s
	for {
		i := strings.Index(rest, goShape)
		if i < 0 {
			break
		}
		eol := strings.IndexByte(rest[i:], '\n')
		line := rest[i:]
		if eol >= 0 {
			line = rest[i : i+eol]
		}
		j := strings.LastIndexByte(line[len(goShape)-1:], ']')
		if j < 0 {
			// No closing bracket on this line: keep it, look further.
			b.WriteString(rest[:i+len(line)])
			rest = rest[i+len(line):]
			continue
		}
		b.WriteString(rest[:i])
		rest = rest[i+len(goShape)-1+j+1:]
	}
	b.WriteString(rest)
	return b.String()
}

// DropGoTypeParameters removes the type parameters of generic Go functions
// from every string ("x[go.shape.int].f" becomes "x.f"): Go 1.21+ names any
// instantiation at every call site (golang/go#64528), which splits one
// frame into many. When a name changed, equal functions, locations and
// samples are merged so that the stacks are the same as Pyroscope's.
func DropGoTypeParameters(p *googlev1.Profile) bool {
	n := 0
	for i, s := range p.StringTable {
		if c := dropTypeParameters(s); c != s {
			p.StringTable[i] = c
			n++
		}
	}
	if n == 0 {
		return false
	}
	mergeEqual(p)
	return true
}

// The Go runtime cuts heap stacks at 32 frames (128 since Go 1.23) and CPU
// stacks at 64; some truncated heap stacks are up to 4 frames shorter.
const (
	goHeapDepth     = 32
	goHeapDepthNew  = 33 // a deeper heap stack: Go 1.23+, not truncated at 32
	goCPUDepth      = 64
	goDepthSlack    = 4
	repairSuffix    = 24 // the root-most frames compared; shorter stacks are left alone
	repairToken     = 16 // frames that must match in a row
	repairShifts    = 8  // a stack may continue up to 8 frames below another's token
	repairMaxChains = 56
)

// MayHaveTruncatedGoStacks reports whether a Go profile may hold stacks the
// runtime truncated: a heap profile (alloc_/inuse_ objects/space) with a
// stack of at least 28 frames and none of 33 or more, or a CPU profile with
// a stack of at least 60 frames.
func MayHaveTruncatedGoStacks(p *googlev1.Profile) bool {
	minDepth, maxDepth := 0, 0
	switch {
	case hasSampleType(p, "alloc_objects", "alloc_space", "inuse_objects", "inuse_space"):
		minDepth, maxDepth = goHeapDepth-goDepthSlack, goHeapDepthNew
	case hasSampleType(p, "cpu"):
		minDepth = goCPUDepth - goDepthSlack
	default:
		return false
	}
	deep := false
	for _, s := range p.Sample {
		if len(s.LocationId) >= minDepth {
			deep = true
		}
		if maxDepth > 0 && len(s.LocationId) >= maxDepth {
			return false
		}
	}
	return deep
}

func hasSampleType(p *googlev1.Profile, names ...string) bool {
	for _, st := range p.SampleType {
		if st.Type >= 0 && st.Type < int64(len(p.StringTable)) && slices.Contains(names, p.StringTable[st.Type]) {
			return true
		}
	}
	return false
}

// leLess orders location ids as Pyroscope's repair compares them: by their
// little-endian bytes.
func leCompare(a, b []uint64) int {
	for i := range a {
		if a[i] != b[i] {
			x, y := bits.ReverseBytes64(a[i]), bits.ReverseBytes64(b[i])
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

// littleEndian: the machine stores a uint64's bytes least significant first,
// so that comparing two id arrays' memory byte by byte is leCompare.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// compareTails is leCompare of two equally long stacks, as one memory
// comparison where the machine allows.
func compareTails(a, b []uint64) int {
	if !littleEndian || len(a) == 0 {
		return leCompare(a, b)
	}
	return bytes.Compare(unsafe.Slice((*byte)(unsafe.Pointer(&a[0])), 8*len(a)), unsafe.Slice((*byte)(unsafe.Pointer(&b[0])), 8*len(b)))
}

// tailOf is the root-most n frames of a stack (pprof stacks are leaf first).
func tailOf(s []uint64, n int) []uint64 { return s[len(s)-n:] }

type tokenKey [repairToken]uint64

// place is where a 16-frame window sits: in group (1-based; 0: none),
// shifted shift frames toward the leaf.
type place struct {
	group int
	shift int
}

func zeroedPlaces(s []place, n int) []place {
	if cap(s) < n {
		return make([]place, n)
	}
	s = s[:n]
	clear(s)
	return s
}

// tailKey is a sample and the first location id of its root-most 24
// frames, byte-reversed: comparing keys orders as leCompare does on their
// first id, without reading the sample's stack.
type tailKey struct {
	s     *googlev1.Sample
	first uint64
	short bool // fewer than repairSuffix frames
}

var tailKeys = sync.Pool{New: func() any { return new([]tailKey) }}

// sortByTail sorts samples as Pyroscope's repair does: stacks shorter than
// 24 frames first, then by their root-most 24 frames (leCompare). The
// comparisons give exactly the results of comparing the samples themselves,
// so the (unstable) sort leaves ties in the same order.
func sortByTail(samples []*googlev1.Sample) {
	kp := tailKeys.Get().(*[]tailKey)
	keys := (*kp)[:0]
	for _, s := range samples {
		k := tailKey{s: s, short: len(s.LocationId) < repairSuffix}
		if !k.short {
			k.first = bits.ReverseBytes64(s.LocationId[len(s.LocationId)-repairSuffix])
		}
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b tailKey) int {
		if a.short {
			return -1
		}
		if b.short {
			return 1
		}
		if a.first != b.first {
			if a.first < b.first {
				return -1
			}
			return 1
		}
		return compareTails(tailOf(a.s.LocationId, repairSuffix), tailOf(b.s.LocationId, repairSuffix))
	})
	for i, k := range keys {
		samples[i] = k.s
	}
	clear(keys)
	*kp = keys[:0]
	tailKeys.Put(kp)
}

// RepairTruncatedGoStacks completes Go stacks cut at the runtime's depth
// limit with the root-most frames of another stack of the profile, as
// Pyroscope's FixGoProfile guesses them: stacks of 24 frames or more are
// grouped by their root-most 24 frames; when the root-most 16 frames of a
// group appear in another group's root-most 24 shifted by k (1..8) frames
// toward the leaf, the group is missing that group's k root-most frames
// (followed transitively, at most 56 steps). The stacks of each completed
// group get those frames appended. Returns whether a stack changed.
func RepairTruncatedGoStacks(p *googlev1.Profile) bool {
	samples := p.Sample
	sortByTail(samples)
	first, _ := slices.BinarySearchFunc(samples, true, func(s *googlev1.Sample, _ bool) int {
		if len(s.LocationId) >= repairSuffix {
			return 1
		}
		return -1
	})
	samples = samples[first:]
	if len(samples) == 0 {
		return false
	}
	sc := scratchPool.Get().(*scratch)
	defer sc.put()
	// groups[i] is the index of group i's first sample.
	groups := sc.groups[:0]
	defer func() { sc.groups = groups[:0] }()
	for i, s := range samples {
		if i == 0 || compareTails(tailOf(s.LocationId, repairSuffix), tailOf(samples[i-1].LocationId, repairSuffix)) != 0 {
			groups = append(groups, i)
		}
	}
	groupEnd := func(i int) int {
		if i+1 < len(groups) {
			return groups[i+1]
		}
		return len(samples)
	}

	// For each 16-frame window of a group's suffix, shifted k frames toward
	// the leaf, the group where it sits furthest from the root (the first
	// such group in sorted order on ties).
	if sc.best == nil {
		sc.best = map[tokenKey]place{}
	}
	best := sc.best
	for gi, g := range groups {
		suffix := tailOf(samples[g].LocationId, repairSuffix)
		for k := 1; k <= repairShifts; k++ {
			var t tokenKey
			copy(t[:], suffix[repairShifts-k:repairSuffix-k])
			if c, ok := best[t]; !ok || k > c.shift {
				best[t] = place{group: gi + 1, shift: k}
			}
		}
	}
	// next[i]: the group whose frames continue group i's root, if any.
	sc.next = zeroedPlaces(sc.next, len(groups))
	next := sc.next
	for gi, g := range groups {
		var t tokenKey
		copy(t[:], tailOf(samples[g].LocationId, repairToken))
		if c, ok := best[t]; ok && c.group-1 != gi {
			next[gi] = c
		}
	}
	changed := false
	var ids idSlab
	for gi, g := range groups {
		c := next[gi]
		missing := 0
		for steps := 0; c.group > 0 && c.shift > 0; {
			missing += c.shift
			n := next[c.group-1]
			if n.group == 0 {
				break
			}
			c = n
			if steps++; steps == repairMaxChains {
				return changed // a cycle: leave the rest as they are
			}
		}
		if missing == 0 {
			continue
		}
		ref := samples[groups[c.group-1]].LocationId
		if missing >= len(ref) {
			continue
		}
		tail := ref[len(ref)-missing:]
		for _, s := range samples[g:groupEnd(gi)] {
			// Never append in place: decoded samples may share one array.
			s.LocationId = ids.concat(s.LocationId, tail)
		}
		changed = true
	}
	return changed
}
