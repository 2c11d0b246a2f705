package trie

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// collect runs a reader and sums what it reports per stack.
func collect(read func([]byte, func([]byte, uint64) error) error, data []byte) (map[string]uint64, error) {
	got := map[string]uint64{}
	err := read(data, func(k []byte, v uint64) error {
		got[string(k)] += v
		return nil
	})
	return got, err
}

// nodes builds an encoding from (name, value, children) triples.
func nodes(ns ...any) []byte {
	var b []byte
	for i := 0; i < len(ns); i += 3 {
		b = AppendNode(b, ns[i].(string), uint64(ns[i+1].(int)), uint64(ns[i+2].(int)))
	}
	return b
}

func TestTrieHandWritten(t *testing.T) {
	// Names split keys anywhere, not only at ';': "ma" + "in;" + "work".
	data := nodes(
		"", 0, 2,
		"ma", 0, 2,
		"in;", 1, 2,
		"work", 3, 0,
		"idle", 2, 0,
		"ke", 7, 0,
		"gc", 5, 0,
	)
	want := map[string]uint64{"main;": 1, "main;work": 3, "main;idle": 2, "make": 7, "gc": 5}
	got, err := collect(Trie, data)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, %v; want %v", got, err, want)
	}
	// The same bytes written out by hand, as an agent sends them.
	raw := []byte{0, 0, 2, 2, 'm', 'a', 0, 2, 3, 'i', 'n', ';', 1, 2, 4, 'w', 'o', 'r', 'k', 3, 0, 4, 'i', 'd', 'l', 'e', 2, 0, 2, 'k', 'e', 7, 0, 2, 'g', 'c', 5, 0}
	if string(raw) != string(data) {
		t.Fatalf("fixture differs from AppendNode:\n%v\n%v", raw, data)
	}
}

func TestTrieAsPyroscopeReadsIt(t *testing.T) {
	cases := []struct {
		name string
		data []byte
		want map[string]uint64
	}{
		{"empty", nil, map[string]uint64{}},
		{"root only", nodes("", 0, 0), map[string]uint64{}},
		// The root's child count is not enforced: later nodes are its children.
		{"more root children than announced", nodes("", 0, 1, "a", 1, 0, "b", 2, 0), map[string]uint64{"a": 1, "b": 2}},
		// Ending where a node still expects children is accepted.
		{"ends early", nodes("", 0, 2, "a;", 0, 3, "b", 4, 0), map[string]uint64{"a;b": 4}},
		{"large value", nodes("", 0, 1, "x", 1<<40, 0), map[string]uint64{"x": 1 << 40}},
		{"duplicate keys add up", nodes("", 0, 2, "x", 1, 0, "x", 2, 0), map[string]uint64{"x": 3}},
	}
	for _, c := range cases {
		got, err := collect(Trie, c.data)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: got %v, %v; want %v", c.name, got, err, c.want)
		}
	}
}

func TestMalformed(t *testing.T) {
	cases := []struct {
		name string
		data []byte
		msg  string
	}{
		{"name past the end", []byte{0, 0, 1, 9, 'a'}, "runs past the end"},
		{"no value", []byte{0, 0, 1, 1, 'a'}, "value"},
		{"no child count", []byte{0, 0, 1, 1, 'a', 5}, "child count"},
		{"overlong varint", append([]byte{0, 0, 1}, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), "name length"},
		{"truncated varint", []byte{0x80}, "name length"},
	}
	for _, c := range cases {
		for name, read := range map[string]func([]byte, func([]byte, uint64) error) error{"trie": Trie, "tree": Tree} {
			_, err := collect(read, c.data)
			var e *Error
			if !errors.As(err, &e) || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("%s %s: got %v, want an *Error mentioning %q", name, c.name, err, c.msg)
			}
		}
	}
}

func TestTreeHandWritten(t *testing.T) {
	data := nodes(
		"", 0, 2,
		"main", 1, 2,
		"work", 3, 1,
		"leaf", 4, 0,
		"idle", 2, 0,
		"gc", 5, 0,
	)
	want := map[string]uint64{"main": 1, "main;work": 3, "main;work;leaf": 4, "main;idle": 2, "gc": 5}
	got, err := collect(Tree, data)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, %v; want %v", got, err, want)
	}
	raw := []byte{0, 0, 2, 4, 'm', 'a', 'i', 'n', 1, 2, 4, 'w', 'o', 'r', 'k', 3, 1, 4, 'l', 'e', 'a', 'f', 4, 0, 4, 'i', 'd', 'l', 'e', 2, 0, 2, 'g', 'c', 5, 0}
	if string(raw) != string(data) {
		t.Fatalf("fixture differs from AppendNode:\n%v\n%v", raw, data)
	}
}

func TestTreeAsPyroscopeReadsIt(t *testing.T) {
	cases := []struct {
		name string
		data []byte
		want map[string]uint64
	}{
		{"root only", nodes("", 9, 0), map[string]uint64{}},
		{"root value and name are not a stack", nodes("root", 9, 1, "a", 1, 0), map[string]uint64{"a": 1}},
		{"trailing bytes ignored", append(nodes("", 0, 1, "a", 1, 0), 0xff, 0x00), map[string]uint64{"a": 1}},
		{"unnamed first frame has no stack", nodes("", 0, 1, "", 5, 1, "b", 2, 0), map[string]uint64{";b": 2}},
		{"siblings of one name add up", nodes("", 0, 2, "a", 1, 0, "a", 2, 0), map[string]uint64{"a": 3}},
	}
	for _, c := range cases {
		got, err := collect(Tree, c.data)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: got %v, %v; want %v", c.name, got, err, c.want)
		}
	}
	for name, data := range map[string][]byte{
		"empty":          nil,
		"missing child":  nodes("", 0, 2, "a", 1, 0),
		"missing nested": nodes("", 0, 1, "a", 1, 3, "b", 1, 0),
	} {
		if _, err := collect(Tree, data); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestCallbackErrorStops(t *testing.T) {
	stop := errors.New("stop")
	for name, read := range map[string]func([]byte, func([]byte, uint64) error) error{"trie": Trie, "tree": Tree} {
		data := EncodeTree(map[string]uint64{"a": 1, "b": 1, "c": 1})
		if name == "trie" {
			data = EncodeTrie(map[string]uint64{"a": 1, "b": 1, "c": 1})
		}
		calls := 0
		err := read(data, func([]byte, uint64) error { calls++; return stop })
		if err != stop || calls != 1 {
			t.Errorf("%s: err %v after %d calls", name, err, calls)
		}
	}
}

// randomStacks gives n folded stacks over a small alphabet of frames, so
// that prefixes are shared and the radix splits fall inside frames.
func randomStacks(r *rand.Rand, n int) map[string]uint64 {
	frames := []string{"main", "main.work", "main.worker", "runtime.gc", "io.Read", "a", "ab"}
	out := map[string]uint64{}
	for i := 0; i < n; i++ {
		depth := 1 + r.IntN(12)
		fs := make([]string, depth)
		for j := range fs {
			fs[j] = frames[r.IntN(len(frames))]
		}
		out[strings.Join(fs, ";")] += 1 + uint64(r.IntN(1000))
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 50; i++ {
		stacks := randomStacks(r, 1+r.IntN(200))
		for name, c := range map[string]struct {
			enc  func(map[string]uint64) []byte
			read func([]byte, func([]byte, uint64) error) error
		}{"trie": {EncodeTrie, Trie}, "tree": {EncodeTree, Tree}} {
			got, err := collect(c.read, c.enc(stacks))
			if err != nil || !reflect.DeepEqual(got, stacks) {
				t.Fatalf("%s round %d: %v\ngot  %v\nwant %v", name, i, err, got, stacks)
			}
		}
	}
}

func TestEncodeTrieSplitsInsideFrames(t *testing.T) {
	// "main.work" and "main.worker" share "main.work": the trie must name a
	// node by that fragment, as the agents' tries do.
	data := EncodeTrie(map[string]uint64{"main.work": 1, "main.worker": 2})
	want := nodes("", 0, 1, "main.work", 1, 1, "er", 2, 0)
	if string(data) != string(want) {
		t.Fatalf("got %v, want %v", data, want)
	}
}

func ExampleTree() {
	data := EncodeTree(map[string]uint64{"main;work": 3, "main": 1})
	_ = Tree(data, func(stack []byte, v uint64) error {
		fmt.Println(string(stack), v)
		return nil
	})
	// Output:
	// main 1
	// main;work 3
}
