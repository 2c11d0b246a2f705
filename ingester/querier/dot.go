package querier

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
)

// DefaultDotNodes bounds a DOT graph when the request does not say (a graph
// of thousands of nodes is no help to a reader).
const DefaultDotNodes = 100

// Dot renders a merged profile (one value per sample) as a Graphviz digraph
// of functions, the way `go tool pprof -dot` draws one: a node per function
// with its flat (self) and cumulative values, an edge per caller → callee with
// the value flowing through it. Only the maxNodes functions with the largest
// cumulative values are drawn (0: all); a recursive function counts once per stack.
func Dot(p *googlev1.Profile, maxNodes int) string {
	str := func(i int64) string {
		if i >= 0 && i < int64(len(p.StringTable)) {
			return p.StringTable[i]
		}
		return ""
	}
	fnName := map[uint64]string{}
	for _, f := range p.Function {
		fnName[f.Id] = str(f.Name)
	}
	locNames := map[uint64][]string{} // inlined frames, innermost first
	for _, l := range p.Location {
		var names []string
		for _, ln := range l.Line {
			names = append(names, fnName[ln.FunctionId])
		}
		if len(names) == 0 {
			names = []string{"0x" + strconv.FormatUint(l.Address, 16)}
		}
		locNames[l.Id] = names
	}
	type edge struct{ from, to string }
	flat, cum := map[string]int64{}, map[string]int64{}
	edges := map[edge]int64{}
	var total int64
	var stack []string
	for _, s := range p.Sample {
		if len(s.Value) == 0 {
			continue
		}
		v := s.Value[0]
		total += v
		stack = stack[:0] // leaf first
		for _, id := range s.LocationId {
			stack = append(stack, locNames[id]...)
		}
		if len(stack) == 0 {
			continue
		}
		flat[stack[0]] += v
		seen := map[string]bool{}
		seenEdge := map[edge]bool{}
		for i, n := range stack {
			if !seen[n] {
				seen[n] = true
				cum[n] += v
			}
			if i+1 < len(stack) {
				e := edge{from: stack[i+1], to: n}
				if !seenEdge[e] {
					seenEdge[e] = true
					edges[e] += v
				}
			}
		}
	}
	names := make([]string, 0, len(cum))
	for n := range cum {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		if cum[names[i]] != cum[names[j]] {
			return cum[names[i]] > cum[names[j]]
		}
		return names[i] < names[j]
	})
	if maxNodes > 0 && len(names) > maxNodes {
		names = names[:maxNodes]
	}
	id := map[string]int{}
	var shown int64
	for i, n := range names {
		id[n] = i + 1
		shown += flat[n]
	}
	typ := ""
	if len(p.SampleType) > 0 {
		typ = str(p.SampleType[0].Type)
	}
	unit := ""
	if len(p.SampleType) > 0 {
		unit = str(p.SampleType[0].Unit)
	}
	var b strings.Builder
	b.WriteString("digraph \"profile\" {\n")
	b.WriteString("node [style=filled fillcolor=\"#f8f8f8\"]\n")
	fmt.Fprintf(&b, "subgraph cluster_L { \"Type: %s\" [shape=box fontsize=16 label=%s] }\n", dotEscape(typ),
		strconv.Quote(fmt.Sprintf("Type: %s\\lUnit: %s\\lShowing %d of %d nodes, accounting for %d of %d total (%s)\\l", typ, unit, len(names), len(cum), shown, total, pct(shown, total))))
	for i, n := range names {
		label := fmt.Sprintf("%s\n%d (%s)\nof %d (%s)", n, flat[n], pct(flat[n], total), cum[n], pct(cum[n], total))
		size := 8 + 16*float64(abs64(flat[n]))/float64(max(abs64(total), 1))
		fmt.Fprintf(&b, "N%d [label=%s fontsize=%.0f shape=box tooltip=%s]\n", i+1, strconv.Quote(label), size, strconv.Quote(n))
	}
	es := make([]edge, 0, len(edges))
	for e := range edges {
		if id[e.from] != 0 && id[e.to] != 0 {
			es = append(es, e)
		}
	}
	sort.Slice(es, func(i, j int) bool {
		if edges[es[i]] != edges[es[j]] {
			return edges[es[i]] > edges[es[j]]
		}
		if id[es[i].from] != id[es[j].from] {
			return id[es[i].from] < id[es[j].from]
		}
		return id[es[i].to] < id[es[j].to]
	})
	for _, e := range es {
		fmt.Fprintf(&b, "N%d -> N%d [label=\" %d\" weight=%d]\n", id[e.from], id[e.to], edges[e], max(1, 100*abs64(edges[e])/max(abs64(total), 1)))
	}
	b.WriteString("}\n")
	return b.String()
}

func dotEscape(s string) string { return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) }

func pct(v, total int64) string {
	if total == 0 {
		return "0%"
	}
	return strconv.FormatFloat(100*float64(v)/float64(total), 'f', 2, 64) + "%"
}
