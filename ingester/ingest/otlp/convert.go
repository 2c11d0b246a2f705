// Package otlp accepts OpenTelemetry profiles (OTLP, profiles v1development,
// as Pyroscope v1.18 does): it converts an ExportProfilesServiceRequest into
// pprof profiles with their series labels, and serves the gRPC
// ProfilesService/Export and the OTLP/HTTP POST /v1development/profiles
// endpoints, handing every profile to the push front door (tenant,
// validation, limits, WAL, replication, profile ids).
//
// The conversion follows Pyroscope's:
//   - one pprof profile per OTLP profile and per value of the samples'
//     service.name attribute;
//   - series labels: the resource's then the scope's attributes with a string
//     value (the first of a name wins), names sanitized (dots become
//     underscores), __name__ from the sample type, service_name from the
//     sample's service.name, else the resource's service.name, else
//     unknown_service (":<process.executable.name>" appended when the
//     resource names the executable);
//   - samples:count with period type cpu:nanoseconds becomes cpu:nanoseconds
//     (values times the period), __name__ process_cpu; events:nanoseconds
//     without a period is off_cpu (a sample's values summed); any other type
//     is named after its period type;
//   - a sample without values counts its timestamps;
//   - the other sample attributes with a string value become sample labels
//     (series labels once stored), a link becomes span_id;
//   - unsymbolized frames keep their address and mapping (with the
//     process.executable.build_id.gnu attribute as build id); symbolized ones
//     lose them, as Pyroscope's ingestion clears the addresses of mappings
//     with functions.
package otlp

import (
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	googlev1 "github.com/grafana/pyroscope/api/gen/proto/go/google/v1"
	collectorv1 "go.opentelemetry.io/proto/otlp/collector/profiles/v1development"
	commonv1 "go.opentelemetry.io/proto/otlp/common/v1"
	profilesv1 "go.opentelemetry.io/proto/otlp/profiles/v1development"

	"github.com/hearth-dev/hearth/ingester/ingest"
	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/normalize"
)

// Attribute keys with a meaning of their own (OpenTelemetry semantic conventions).
const (
	attrServiceName    = "service.name"
	attrExecutableName = "process.executable.name"
	attrBuildID        = "process.executable.build_id.gnu"
)

// Profile names Pyroscope gives the two sample types it recognises.
const (
	nameCPU    = "process_cpu"
	nameOffCPU = "off_cpu"
)

// defaultDuration is the duration of a profile that gives none (Pyroscope's).
const defaultDuration = 10 * time.Second

// Convert turns an export request into the profiles to store, each with its
// series labels (service_name and __name__ among them). now is the time of a
// profile that gives none. Any reference out of its table, a sample without
// values or a label name that cannot be sanitized is an error naming where
// it is: nothing of the request is to be stored then.
func Convert(req *collectorv1.ExportProfilesServiceRequest, now time.Time) ([]ingest.Decoded, error) {
	if req.GetDictionary() == nil {
		return nil, errors.New("missing profile metadata dictionary")
	}
	if req.GetResourceProfiles() == nil {
		return nil, errors.New("missing resource profiles")
	}
	d := req.Dictionary
	var out []ingest.Decoded
	for ri, rp := range req.ResourceProfiles {
		res := rp.GetResource().GetAttributes()
		svc := serviceName(res)
		for si, sp := range rp.GetScopeProfiles() {
			where := func(pi int) string {
				return fmt.Sprintf("resource_profiles[%d].scope_profiles[%d].profiles[%d]", ri, si, pi)
			}
			base, err := attributeLabels(res, sp.GetScope().GetAttributes())
			if err != nil {
				return nil, fmt.Errorf("resource_profiles[%d].scope_profiles[%d]: %w", ri, si, err)
			}
			for pi, p := range sp.GetProfiles() {
				conv, err := convertProfile(p, d, now)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", where(pi), err)
				}
				for _, c := range conv {
					labels := slices.Clone(base)
					if c.name != "" {
						labels = append(labels, ingest.LabelPair{Name: model.LabelProfileName, Value: c.name})
					}
					s := c.service
					if s == "" {
						s = svc
					}
					labels, err = addLabel(labels, model.LabelServiceName, s)
					if err != nil {
						return nil, fmt.Errorf("%s: %w", where(pi), err)
					}
					out = append(out, ingest.Decoded{Profile: c.profile, Labels: labels})
				}
			}
		}
	}
	return out, nil
}

// serviceName is the resource's service.name; without one
// unknown_service, with ":" and the executable's name for each
// process.executable.name attribute, as the semantic conventions and
// Pyroscope have it.
func serviceName(attrs []*commonv1.KeyValue) string {
	fallback := model.UnknownService
	for _, a := range attrs {
		v := a.GetValue().GetStringValue()
		if v == "" {
			continue
		}
		switch a.GetKey() {
		case attrServiceName:
			return v
		case attrExecutableName:
			fallback += ":" + v
		}
	}
	return fallback
}

// attributeLabels are the series labels of the resource's and the scope's
// attributes: those with a non-empty string value, the first of a key
// winning, __name__ left out (the profile type names the profile), names
// sanitized.
func attributeLabels(resource, scope []*commonv1.KeyValue) ([]ingest.LabelPair, error) {
	seen := map[string]bool{model.LabelProfileName: true}
	var out []ingest.LabelPair
	for _, attrs := range [][]*commonv1.KeyValue{resource, scope} {
		for _, a := range attrs {
			v := a.GetValue().GetStringValue()
			if seen[a.GetKey()] || v == "" {
				continue
			}
			seen[a.GetKey()] = true
			var err error
			if out, err = addLabel(out, a.GetKey(), v); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// addLabel appends name=value with the name sanitized. A name that
// sanitizing makes equal to one already there is merged when the values are
// equal (service.name and service_name of one service) and refused
// otherwise, as Pyroscope's label validation does.
func addLabel(ls []ingest.LabelPair, name, value string) ([]ingest.LabelPair, error) {
	san, ok := normalize.SanitizeLabelName(name)
	if !ok {
		return nil, fmt.Errorf("attribute %q cannot be a label name: it must match [a-zA-Z_.][a-zA-Z0-9_.]*", name)
	}
	for _, l := range ls {
		if l.Name != san {
			continue
		}
		if l.Value == value {
			return ls, nil
		}
		return nil, fmt.Errorf("label %q is given twice with different values (%q and %q) once dots become underscores", san, l.Value, value)
	}
	return append(ls, ingest.LabelPair{Name: san, Value: value}), nil
}

// at is t[i], or an error naming the table when i is out of it.
func at[T any](t []T, i int32, table string) (T, error) {
	if i >= 0 && int(i) < len(t) {
		return t[i], nil
	}
	var zero T
	return zero, fmt.Errorf("%s index %d is out of range (the table has %d entries)", table, i, len(t))
}

// converted is one pprof profile of an OTLP profile: the samples of one
// service.name attribute value ("": none).
type converted struct {
	service string
	name    string // __name__, "" when the type gives none
	profile *googlev1.Profile
}

// convertProfile splits an OTLP profile by its samples' service.name and
// converts each part. A profile without samples gives none.
func convertProfile(p *profilesv1.Profile, d *profilesv1.ProfilesDictionary, now time.Time) ([]converted, error) {
	var (
		order    []string
		builders = map[string]*builder{}
	)
	for i, s := range p.GetSamples() {
		svc, err := sampleService(s, d)
		if err != nil {
			return nil, fmt.Errorf("sample %d: %w", i, err)
		}
		b, ok := builders[svc]
		if !ok {
			if b, err = newBuilder(p, d, now); err != nil {
				return nil, err
			}
			builders[svc] = b
			order = append(order, svc)
		}
		if err := b.addSample(s); err != nil {
			return nil, fmt.Errorf("sample %d: %w", i, err)
		}
	}
	out := make([]converted, 0, len(order))
	for _, svc := range order {
		b := builders[svc]
		b.clearAddresses()
		out = append(out, converted{service: svc, name: b.name, profile: b.dst})
	}
	return out, nil
}

// sampleService is the value of a sample's service.name attribute, "" if none.
func sampleService(s *profilesv1.Sample, d *profilesv1.ProfilesDictionary) (string, error) {
	v, _, err := attributeValue(s.GetAttributeIndices(), d, attrServiceName)
	return v, err
}

// attributeValue finds key among the attributes (indices into the
// dictionary) and returns its string value.
func attributeValue(indices []int32, d *profilesv1.ProfilesDictionary, key string) (string, bool, error) {
	for _, ai := range indices {
		a, err := at(d.GetAttributeTable(), ai, "attribute")
		if err != nil {
			return "", false, err
		}
		k, err := at(d.GetStringTable(), a.GetKeyStrindex(), "attribute key string")
		if err != nil {
			return "", false, err
		}
		if k == key {
			return a.GetValue().GetStringValue(), true, nil
		}
	}
	return "", false, nil
}

// valueKind is how a sample's values are converted.
type valueKind int

const (
	valuesAsIs        valueKind = iota
	valuesTimesPeriod           // samples:count of a CPU period: nanoseconds of CPU
	valuesSummed                // off-CPU events: one value
)

// mappingKey is an OTLP mapping with the symbol flags of the sample that
// first used one of its locations: Pyroscope derives the flags per sample,
// and they decide whether addresses are kept.
type mappingKey struct {
	index int32
	flags mappingFlags
}

type mappingFlags struct{ functions, filenames, lines, inline bool }

// builder accumulates the pprof profile of one OTLP profile and service.
type builder struct {
	d    *profilesv1.ProfilesDictionary
	dst  *googlev1.Profile
	kind valueKind
	name string

	strs      map[string]int64
	functions map[int32]uint64 // OTLP function index → pprof id
	locations map[int32]uint64
	mappings  map[mappingKey]uint64
}

func newBuilder(p *profilesv1.Profile, d *profilesv1.ProfilesDictionary, now time.Time) (*builder, error) {
	b := &builder{
		d: d,
		dst: &googlev1.Profile{
			TimeNanos:     int64(p.GetTimeUnixNano()),
			DurationNanos: int64(p.GetDurationNano()),
			Period:        p.GetPeriod(),
		},
		// Sized from the dictionary (bounded): growing these maps was a
		// third of the conversion's time.
		strs:      make(map[string]int64, min(len(d.GetStringTable()), 4096)),
		functions: make(map[int32]uint64, min(len(d.GetFunctionTable()), 4096)),
		locations: make(map[int32]uint64, min(len(d.GetLocationTable()), 4096)),
		mappings:  map[mappingKey]uint64{},
	}
	b.str("")
	if b.dst.TimeNanos <= 0 {
		b.dst.TimeNanos = now.UnixNano()
	}
	if b.dst.DurationNanos <= 0 {
		b.dst.DurationNanos = defaultDuration.Nanoseconds()
	}
	if p.GetSampleType() == nil {
		return nil, errors.New("sample type is missing")
	}
	typ, unit, err := b.valueType(p.SampleType, "sample type")
	if err != nil {
		return nil, err
	}
	var ptyp, punit string
	if p.PeriodType != nil {
		if ptyp, punit, err = b.valueType(p.PeriodType, "period type"); err != nil {
			return nil, err
		}
		b.dst.PeriodType = &googlev1.ValueType{Type: b.str(ptyp), Unit: b.str(punit)}
	}
	if p.PeriodType == nil || p.Period == 0 {
		ptyp, punit = "", "" // the type id has no period then
	}
	b.kind, b.name, typ, unit = classify(typ, unit, ptyp, punit)
	b.dst.SampleType = []*googlev1.ValueType{{Type: b.str(typ), Unit: b.str(unit)}}
	b.dst.DefaultSampleType = b.str(typ)
	return b, nil
}

// classify decides from the sample and period types how values convert, the
// profile's __name__ and its sample type, as Pyroscope: CPU samples become
// cpu:nanoseconds (process_cpu), events:nanoseconds without a period is
// off-CPU, and any other type takes the name of its period type (the third
// field of type:unit:period_type:period_unit; "" without a period).
func classify(typ, unit, ptyp, punit string) (kind valueKind, name, outType, outUnit string) {
	id := typ + ":" + unit + ":" + ptyp + ":" + punit
	switch id {
	case "samples:count:cpu:nanoseconds":
		return valuesTimesPeriod, nameCPU, "cpu", "nanoseconds"
	case "events:nanoseconds::":
		return valuesSummed, nameOffCPU, typ, unit
	}
	return valuesAsIs, strings.Split(id, ":")[2], typ, unit
}

func (b *builder) str(s string) int64 {
	if i, ok := b.strs[s]; ok {
		return i
	}
	i := int64(len(b.dst.StringTable))
	b.strs[s] = i
	b.dst.StringTable = append(b.dst.StringTable, s)
	return i
}

func (b *builder) dictStr(i int32, what string) (string, error) {
	return at(b.d.GetStringTable(), i, what+" string")
}

func (b *builder) valueType(vt *profilesv1.ValueType, what string) (string, string, error) {
	t, err := b.dictStr(vt.GetTypeStrindex(), what)
	if err != nil {
		return "", "", err
	}
	u, err := b.dictStr(vt.GetUnitStrindex(), what+" unit")
	if err != nil {
		return "", "", err
	}
	return t, u, nil
}

// values converts a sample's values: its timestamps counted when it has no
// values, times the period for CPU samples, summed for off-CPU ones.
func (b *builder) values(s *profilesv1.Sample) ([]int64, error) {
	v := slices.Clone(s.GetValues())
	if len(v) == 0 && len(s.GetTimestampsUnixNano()) > 0 {
		v = []int64{int64(len(s.TimestampsUnixNano))}
	}
	if len(v) == 0 {
		return nil, errors.New("sample value is required: the sample has neither values nor timestamps")
	}
	switch b.kind {
	case valuesTimesPeriod:
		v[0] *= b.dst.Period
	case valuesSummed:
		var sum int64
		for _, x := range v {
			sum += x
		}
		v = []int64{sum}
	}
	// Pyroscope's conversion checks this for profiles with a period only;
	// without one its validation refuses the profile later: the same 400.
	if len(v) != 1 {
		return nil, fmt.Errorf("sample values length mismatch: %d values for 1 sample type", len(v))
	}
	return v, nil
}

func (b *builder) addSample(s *profilesv1.Sample) error {
	v, err := b.values(s)
	if err != nil {
		return err
	}
	labels, err := b.sampleLabels(s)
	if err != nil {
		return err
	}
	stack, err := at(b.d.GetStackTable(), s.GetStackIndex(), "stack")
	if err != nil {
		return err
	}
	locs := make([]*profilesv1.Location, len(stack.GetLocationIndices()))
	for i, li := range stack.GetLocationIndices() {
		if locs[i], err = at(b.d.GetLocationTable(), li, "location"); err != nil {
			return err
		}
		if _, err = at(b.d.GetMappingTable(), locs[i].GetMappingIndex(), "mapping"); err != nil {
			return fmt.Errorf("location %d: %w", li, err)
		}
	}
	ids := make([]uint64, len(locs))
	var flags map[int32]mappingFlags // computed once a location is new
	for i, li := range stack.GetLocationIndices() {
		if id, ok := b.locations[li]; ok {
			ids[i] = id
			continue
		}
		if flags == nil {
			flags = b.sampleMappingFlags(locs)
		}
		if ids[i], err = b.location(li, locs[i], flags[locs[i].GetMappingIndex()]); err != nil {
			return fmt.Errorf("location %d: %w", li, err)
		}
	}
	b.dst.Sample = append(b.dst.Sample, &googlev1.Sample{LocationId: ids, Value: v, Label: labels})
	return nil
}

// sampleLabels are a sample's attributes with a string value but
// service.name (names sanitized, the first of a name wins) and its link's
// span id.
func (b *builder) sampleLabels(s *profilesv1.Sample) ([]*googlev1.Label, error) {
	var out []*googlev1.Label
	var seen map[string]bool
	for _, ai := range s.GetAttributeIndices() {
		a, err := at(b.d.GetAttributeTable(), ai, "attribute")
		if err != nil {
			return nil, err
		}
		v := a.GetValue().GetStringValue()
		if v == "" {
			continue
		}
		k, err := b.dictStr(a.GetKeyStrindex(), "attribute key")
		if err != nil {
			return nil, err
		}
		if k == attrServiceName {
			continue
		}
		name, ok := normalize.SanitizeLabelName(k)
		if !ok {
			return nil, fmt.Errorf("attribute %q cannot be a label name: it must match [a-zA-Z_.][a-zA-Z0-9_.]*", k)
		}
		if seen[name] {
			continue
		}
		if seen == nil {
			seen = map[string]bool{}
		}
		seen[name] = true
		out = append(out, &googlev1.Label{Key: b.str(name), Str: b.str(v)})
	}
	if li := s.GetLinkIndex(); li != 0 {
		l, err := at(b.d.GetLinkTable(), li, "link")
		if err != nil {
			return nil, err
		}
		out = append(out, &googlev1.Label{Key: b.str(model.LabelSpanID), Str: b.str(hex.EncodeToString(l.GetSpanId()))})
	}
	return out, nil
}

// sampleMappingFlags are, per mapping of a stack, what its locations in this
// stack have: any location without lines clears them all; a line without a
// function (index 0), without a line number, or a function without a file
// name clears that one; inline frames need every line to be inlined, i.e.
// never (Pyroscope's rule, kept for equal addresses).
func (b *builder) sampleMappingFlags(locs []*profilesv1.Location) map[int32]mappingFlags {
	out := make(map[int32]mappingFlags, 2)
	for _, l := range locs {
		mi := l.GetMappingIndex()
		f, ok := out[mi]
		if !ok {
			f = mappingFlags{true, true, true, true}
		}
		if len(l.GetLines()) == 0 {
			f = mappingFlags{}
		}
		for i, ln := range l.GetLines() {
			f.lines = f.lines && ln.GetLine() > 0
			f.inline = f.inline && i >= 1
			if ln.GetFunctionIndex() <= 0 {
				f.functions = false
				continue
			}
			if fn, err := at(b.d.GetFunctionTable(), ln.GetFunctionIndex(), "function"); err == nil {
				f.filenames = f.filenames && fn.GetFilenameStrindex() > 0
			}
		}
		out[mi] = f
	}
	return out
}

func (b *builder) location(li int32, l *profilesv1.Location, flags mappingFlags) (uint64, error) {
	mid, err := b.mapping(l.GetMappingIndex(), flags)
	if err != nil {
		return 0, err
	}
	gl := &googlev1.Location{MappingId: mid, Address: l.GetAddress(), Line: make([]*googlev1.Line, len(l.GetLines()))}
	for i, ln := range l.GetLines() {
		fid, err := b.function(ln.GetFunctionIndex())
		if err != nil {
			return 0, fmt.Errorf("line %d: %w", i, err)
		}
		gl.Line[i] = &googlev1.Line{FunctionId: fid, Line: ln.GetLine()}
	}
	b.dst.Location = append(b.dst.Location, gl)
	gl.Id = uint64(len(b.dst.Location))
	b.locations[li] = gl.Id
	return gl.Id, nil
}

func (b *builder) function(fi int32) (uint64, error) {
	if id, ok := b.functions[fi]; ok {
		return id, nil
	}
	f, err := at(b.d.GetFunctionTable(), fi, "function")
	if err != nil {
		return 0, err
	}
	name, err := b.dictStr(f.GetNameStrindex(), "function name")
	if err != nil {
		return 0, err
	}
	sys, err := b.dictStr(f.GetSystemNameStrindex(), "function system name")
	if err != nil {
		return 0, err
	}
	file, err := b.dictStr(f.GetFilenameStrindex(), "function file name")
	if err != nil {
		return 0, err
	}
	gf := &googlev1.Function{Name: b.str(name), SystemName: b.str(sys), Filename: b.str(file), StartLine: f.GetStartLine()}
	b.dst.Function = append(b.dst.Function, gf)
	gf.Id = uint64(len(b.dst.Function))
	b.functions[fi] = gf.Id
	return gf.Id, nil
}

func (b *builder) mapping(mi int32, flags mappingFlags) (uint64, error) {
	key := mappingKey{mi, flags}
	if id, ok := b.mappings[key]; ok {
		return id, nil
	}
	m, err := at(b.d.GetMappingTable(), mi, "mapping")
	if err != nil {
		return 0, err
	}
	file, err := b.dictStr(m.GetFilenameStrindex(), "mapping file name")
	if err != nil {
		return 0, err
	}
	// An unreadable build id attribute leaves the mapping without one, as in Pyroscope.
	bid, _, _ := attributeValue(m.GetAttributeIndices(), b.d, attrBuildID)
	gm := &googlev1.Mapping{
		MemoryStart: m.GetMemoryStart(), MemoryLimit: m.GetMemoryLimit(), FileOffset: m.GetFileOffset(),
		Filename: b.str(file), BuildId: b.str(bid),
		HasFunctions: flags.functions, HasFilenames: flags.filenames, HasLineNumbers: flags.lines, HasInlineFrames: flags.inline,
	}
	b.dst.Mapping = append(b.dst.Mapping, gm)
	gm.Id = uint64(len(b.dst.Mapping))
	b.mappings[key] = gm.Id
	return gm.Id, nil
}

// clearAddresses drops the addresses of symbolized frames (mappings with
// functions), as Pyroscope's ingestion does: such frames are told apart by
// their functions, and the flame graphs and pprof output equal Pyroscope's.
func (b *builder) clearAddresses() {
	for _, m := range b.dst.Mapping {
		if m.HasFunctions {
			m.MemoryStart, m.MemoryLimit, m.FileOffset = 0, 0, 0
		}
	}
	for _, l := range b.dst.Location {
		if b.dst.Mapping[l.MappingId-1].HasFunctions {
			l.Address = 0
		}
	}
}
