package trie

import (
	"math/rand/v2"
	"reflect"
	"testing"
)

func fuzzSeeds(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	f.Add(EncodeTrie(randomStacks(r, 20)))
	f.Add(EncodeTree(randomStacks(r, 20)))
	f.Add(nodes("", 0, 2, "ma", 0, 2, "in;", 1, 2, "work", 3, 0, "idle", 2, 0, "ke", 7, 0))
	f.Add(nodes("root", 9, 1, "", 5, 1, "b", 2, 0))
	f.Add([]byte{0x80})
	f.Add([]byte{})
}

// FuzzTrie: any input either fails with an *Error or yields stacks that
// survive a round trip through EncodeTrie.
func FuzzTrie(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := collect(Trie, data)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		delete(got, "") // a valued root: EncodeTrie has no empty key
		for k, v := range got {
			if v == 0 {
				t.Fatalf("zero value reported for %q", k)
			}
		}
		again, err := collect(Trie, EncodeTrie(got))
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Fatalf("round trip: %v\n%v\n%v", err, again, got)
		}
	})
}

// FuzzTree: as FuzzTrie, through EncodeTree.
func FuzzTree(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := collect(Tree, data)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		for k, v := range got {
			if v == 0 || k == "" {
				t.Fatalf("reported %q = %d", k, v)
			}
		}
		again, err := collect(Tree, EncodeTree(got))
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Fatalf("round trip: %v\n%v\n%v", err, again, got)
		}
	})
}

func benchData(b *testing.B, enc func(map[string]uint64) []byte) []byte {
	r := rand.New(rand.NewPCG(5, 6))
	return enc(randomStacks(r, 5000))
}

func BenchmarkTrie(b *testing.B) {
	data := benchData(b, EncodeTrie)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := Trie(data, func([]byte, uint64) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTree(b *testing.B) {
	data := benchData(b, EncodeTree)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := Tree(data, func([]byte, uint64) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}
