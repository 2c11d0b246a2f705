// Package testutil holds helpers shared by tests: the shared pprof corpus.
package testutil

import (
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"testing"
)

// RepoRoot is the module root, found from this file's location.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// CorpusDir is ../shared/testdata/pprof beside the project, "" when absent.
func CorpusDir() string {
	d := filepath.Join(RepoRoot(), "..", "shared", "testdata", "pprof")
	if st, err := os.Stat(d); err == nil && st.IsDir() {
		return d
	}
	return ""
}

// Corpus returns the corpus files, or skips... no: it logs one line and
// returns nil when the corpus is absent, so the caller's test passes vacuously
// only outside the project's workspace (CI always has it).
func Corpus(t testing.TB) []string {
	d := CorpusDir()
	if d == "" {
		t.Log("corpus tests did not run: ../shared/testdata/pprof is not beside the project")
		return nil
	}
	ents, err := os.ReadDir(d)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() {
			out = append(out, filepath.Join(d, e.Name()))
		}
	}
	sort.Strings(out)
	return out
}
