package querier

import (
	"strings"
	"testing"

	querierv1 "github.com/grafana/pyroscope/api/gen/proto/go/querier/v1"
)

// decodeFlameGraph rebuilds "a;b;c" → self from the flamebearer levels,
// checking the layout invariants a renderer relies on.
func decodeFlameGraph(t *testing.T, fg *querierv1.FlameGraph) map[string]int64 {
	t.Helper()
	type node struct {
		x, total int64
		path     string
	}
	var prev []node
	out := map[string]int64{}
	for d, lv := range fg.Levels {
		if len(lv.Values)%4 != 0 {
			t.Fatalf("level %d has %d values", d, len(lv.Values))
		}
		var cur []node
		x := int64(0)
		for i := 0; i < len(lv.Values); i += 4 {
			x += lv.Values[i]
			total, self, name := lv.Values[i+1], lv.Values[i+2], fg.Names[lv.Values[i+3]]
			path := name
			if d > 0 {
				parent := -1
				for j, p := range prev {
					if x >= p.x && x+total <= p.x+p.total {
						parent = j
					}
				}
				if parent < 0 {
					t.Fatalf("level %d node %s at %d+%d has no parent", d, name, x, total)
				}
				path = prev[parent].path + ";" + name
			}
			if self > total {
				t.Fatalf("%s: self %d > total %d", path, self, total)
			}
			if self > 0 {
				out[strings.TrimPrefix(path, "total;")] += self
			}
			cur = append(cur, node{x: x, total: total, path: path})
			x += total
		}
		prev = cur
	}
	return out
}

func TestFlameGraphLayout(t *testing.T) {
	tr := newNameTree()
	want := map[string]int64{"main;a;x": 5, "main;a": 2, "main;b;y": 7, "main;b;z": 1, "other": 4}
	for stack, v := range want {
		tr.add(strings.Split(stack, ";"), v)
	}
	fg := tr.flameGraph(0)
	if fg.Total != 19 {
		t.Fatalf("total %d", fg.Total)
	}
	got := decodeFlameGraph(t, fg)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %d want %d (all: %v)", k, got[k], v, got)
		}
	}
	if fg.MaxSelf != 7 {
		t.Errorf("max self %d", fg.MaxSelf)
	}
}

func TestFlameGraphMaxNodesFoldsIntoOther(t *testing.T) {
	tr := newNameTree()
	tr.add([]string{"main", "big"}, 100)
	for i := 0; i < 50; i++ {
		tr.add([]string{"main", "small" + string(rune('A'+i%26)) + string(rune('a'+i/26))}, 1)
	}
	fg := tr.flameGraph(3) // root, main, big
	got := decodeFlameGraph(t, fg)
	if got["main;big"] != 100 || got["main;other"] != 50 || fg.Total != 150 {
		t.Fatalf("got %v total %d", got, fg.Total)
	}
	for _, n := range fg.Names {
		if strings.HasPrefix(n, "small") && strings.Contains(fmtLevels(fg), n) {
			t.Fatalf("dropped node %s still rendered", n)
		}
	}
}

func fmtLevels(fg *querierv1.FlameGraph) string {
	var b strings.Builder
	for _, lv := range fg.Levels {
		for i := 3; i < len(lv.Values); i += 4 {
			b.WriteString(fg.Names[lv.Values[i]] + " ")
		}
	}
	return b.String()
}

func TestTimeRangeDoesNotOverflow(t *testing.T) {
	start, end, err := timeRange(0, 1<<62)
	if err != nil || end < start || end <= 0 {
		t.Fatalf("huge end: %d..%d %v", start, end, err)
	}
	_, end, _ = timeRange(0, 1000)
	if end != 1000*1_000_000+999_999 {
		t.Fatalf("end %d does not cover the last millisecond", end)
	}
}
