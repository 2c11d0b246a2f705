package querier

import (
	"sort"

	querierv1 "github.com/grafana/pyroscope/api/gen/proto/go/querier/v1"
)

// DefaultMaxNodes bounds a flame graph when the request does not say.
const DefaultMaxNodes = 8192

// nameTree aggregates stacks by function name, the shape a flame graph shows.
type nameTree struct {
	names   []string
	nameIDs map[string]int32
	nodes   []nameNode // 0 is the root ("total")
	kids    map[uint64]int32
}

type nameNode struct {
	parent      int32
	name        int32
	total, self int64
	children    []int32
}

func newNameTree() *nameTree {
	return &nameTree{names: []string{"total"}, nameIDs: map[string]int32{"total": 0}, nodes: []nameNode{{parent: -1}}, kids: map[uint64]int32{}}
}

func (t *nameTree) child(parent int32, name string) int32 {
	nid, ok := t.nameIDs[name]
	if !ok {
		nid = int32(len(t.names))
		t.names = append(t.names, name)
		t.nameIDs[name] = nid
	}
	key := uint64(uint32(parent))<<32 | uint64(uint32(nid))
	if c, ok := t.kids[key]; ok {
		return c
	}
	c := int32(len(t.nodes))
	t.nodes = append(t.nodes, nameNode{parent: parent, name: nid})
	t.nodes[parent].children = append(t.nodes[parent].children, c)
	t.kids[key] = c
	return c
}

// add adds value to the root-first stack of names.
func (t *nameTree) add(fr []string, value int64) {
	n := int32(0)
	t.nodes[0].total += value
	for _, name := range fr {
		n = t.child(n, name)
		t.nodes[n].total += value
	}
	t.nodes[n].self += value
}

// flameGraph renders the tree in Pyroscope's flamebearer layout: a level per
// depth, four numbers a node (x offset from the previous node's end on that
// level, total, self, name index), children ordered by name. Nodes beyond
// maxNodes (by total) fold into their parent's self as "other".
func (t *nameTree) flameGraph(maxNodes int) *querierv1.FlameGraph {
	keep := t.keepSet(maxNodes)
	fg := &querierv1.FlameGraph{Names: t.names, Total: t.nodes[0].total}
	otherID := int32(-1)
	type item struct {
		node  int32
		x     int64
		depth int
		other int64 // value of dropped children shown as one "other" node
	}
	// Depth-first, left to right: each level's nodes come out in x order.
	stack := []item{{node: 0}}
	levelEnd := []int64{}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for len(fg.Levels) <= it.depth {
			fg.Levels = append(fg.Levels, &querierv1.Level{})
			levelEnd = append(levelEnd, 0)
		}
		var total, self, name int64
		if it.node >= 0 {
			nd := &t.nodes[it.node]
			total, self, name = nd.total, nd.self, int64(nd.name)
		} else {
			if otherID < 0 {
				otherID = int32(len(fg.Names))
				fg.Names = append(fg.Names, "other")
			}
			total, self, name = it.other, it.other, int64(otherID)
		}
		lv := fg.Levels[it.depth]
		lv.Values = append(lv.Values, it.x-levelEnd[it.depth], total, self, name)
		levelEnd[it.depth] = it.x + total
		fg.MaxSelf = max(fg.MaxSelf, self)
		if it.node < 0 {
			continue
		}
		kids := append([]int32(nil), t.nodes[it.node].children...)
		sort.Slice(kids, func(i, j int) bool { return t.names[t.nodes[kids[i]].name] < t.names[t.nodes[kids[j]].name] })
		var dropped int64
		var push []item
		x := it.x
		for _, k := range kids {
			if !keep[k] {
				dropped += t.nodes[k].total
				continue
			}
			push = append(push, item{node: k, x: x, depth: it.depth + 1})
			x += t.nodes[k].total
		}
		if dropped > 0 {
			push = append(push, item{node: -1, x: x, depth: it.depth + 1, other: dropped})
		}
		for i := len(push) - 1; i >= 0; i-- { // reversed so the leftmost pops first
			stack = append(stack, push[i])
		}
	}
	return fg
}

// keepSet marks the maxNodes nodes with the largest totals (a parent's total
// is never below its child's, so the kept set is a connected tree).
func (t *nameTree) keepSet(maxNodes int) []bool {
	keep := make([]bool, len(t.nodes))
	if maxNodes <= 0 || maxNodes >= len(t.nodes) {
		for i := range keep {
			keep[i] = true
		}
		return keep
	}
	order := make([]int32, len(t.nodes))
	for i := range order {
		order[i] = int32(i)
	}
	sort.SliceStable(order, func(i, j int) bool { return t.nodes[order[i]].total > t.nodes[order[j]].total })
	for _, n := range order[:maxNodes] {
		keep[n] = true
	}
	// Ties may cut a parent while keeping a child: keep ancestors too.
	for _, n := range order[:maxNodes] {
		for p := t.nodes[n].parent; p >= 0 && !keep[p]; p = t.nodes[p].parent {
			keep[p] = true
		}
	}
	keep[0] = true
	return keep
}
