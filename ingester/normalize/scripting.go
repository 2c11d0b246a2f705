package normalize

import (
	"path/filepath"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
)

// IsScriptingSpy reports whether an /ingest spyName is one whose function
// names Pyroscope rewrites: py-spy (the Python agent), rbspy (the Ruby
// agent), or the generic "scripting".
func IsScriptingSpy(spyName string) bool {
	return spyName == "pyspy" || spyName == "rbspy" || spyName == "scripting"
}

// ScriptingFunctionNames names every function of a Python or Ruby profile
// "<file> <function>" (e.g. "qwe.py main"), as Pyroscope does on /ingest
// for the spies IsScriptingSpy accepts, so that equal function names in
// different files are different frames in a flame graph. py-spy frames whose
// file is an absolute path keep their name. Lines point at new functions
// (one per distinct new name); the old ones stay in the profile, unused.
func ScriptingFunctionNames(p *googlev1.Profile, spyName string) bool {
	if !IsScriptingSpy(spyName) || len(p.Function) == 0 {
		return false
	}
	byID := make(map[uint64]*googlev1.Function, len(p.Function))
	maxID := uint64(0)
	for _, f := range p.Function {
		byID[f.Id] = f
		maxID = max(maxID, f.Id)
	}
	str := func(i int64) string {
		if i >= 0 && i < int64(len(p.StringTable)) {
			return p.StringTable[i]
		}
		return ""
	}
	renamed := map[string]*googlev1.Function{}
	changed := false
	for _, loc := range p.Location {
		for _, ln := range loc.Line {
			f, ok := byID[ln.FunctionId]
			if !ok {
				continue
			}
			file := str(f.Filename)
			if spyName == "pyspy" && filepath.IsAbs(file) {
				continue
			}
			name := file + " " + str(f.Name)
			nf, ok := renamed[name]
			if !ok {
				maxID++
				nf = &googlev1.Function{Id: maxID, Name: int64(len(p.StringTable)), SystemName: f.SystemName, Filename: f.Filename, StartLine: f.StartLine}
				p.StringTable = append(p.StringTable, name)
				p.Function = append(p.Function, nf)
				renamed[name] = nf
			}
			ln.FunctionId = nf.Id
			changed = true
		}
	}
	return changed
}
