package normalize

import (
	"strings"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
)

// IsDotnet reports whether an /ingest request comes from the Pyroscope .NET
// agent, as Pyroscope decides it: spyName dotnetspy, or no spyName and a
// sample_type_config naming "inuse-space" (the older agents' name).
func IsDotnet(spyName string, sampleTypeConfigHas func(name string) bool) bool {
	if spyName == "dotnetspy" {
		return true
	}
	return (spyName == "" || spyName == UnknownSpy) && sampleTypeConfigHas != nil && sampleTypeConfigHas("inuse-space")
}

// RepairDotnetFunctionIDs gives ids to the functions of a profile from older
// .NET agents, which write every function with id 0 and one function per
// location, in location order: function i gets location i's id, as
// Pyroscope does on /ingest (push.v1 refuses such profiles: Check). Any
// other profile is left alone.
func RepairDotnetFunctionIDs(p *googlev1.Profile) bool {
	if len(p.Function) == 0 || len(p.Function) != len(p.Location) {
		return false
	}
	for _, f := range p.Function {
		if f.Id != 0 {
			return false
		}
	}
	for i, l := range p.Location {
		p.Function[i].Id = l.Id
	}
	return true
}

// DotnetSampleTypes replaces "-" with "_" in the sample type names of a .NET
// agent's profile (alloc-samples becomes alloc_samples), as Pyroscope does on
// /ingest: profile type ids cannot contain "-".
func DotnetSampleTypes(p *googlev1.Profile) bool {
	changed := false
	for _, st := range p.SampleType {
		if st.Type <= 0 || st.Type >= int64(len(p.StringTable)) {
			continue
		}
		if s := p.StringTable[st.Type]; strings.Contains(s, "-") {
			p.StringTable[st.Type] = strings.ReplaceAll(s, "-", "_")
			changed = true
		}
	}
	return changed
}
