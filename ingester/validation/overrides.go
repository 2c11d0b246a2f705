package validation

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// TenantLimits gives a tenant's effective limits. Everything that enforces a
// limit asks it per request, so a runtime config reload changes enforcement
// without a restart. A Limits value is a TenantLimits: the same limits for
// every tenant (tests, tools).
type TenantLimits interface {
	For(tenant string) *Limits
}

// For returns l for every tenant.
func (l Limits) For(string) *Limits { return &l }

// RuntimeConfig is the content of -runtime-config.file: per-tenant overrides
// of the limits. A key a tenant leaves out keeps the default (the flags).
type RuntimeConfig struct {
	Overrides map[string]*Limits `yaml:"overrides"`
}

// Overrides are the defaults plus the runtime config's per-tenant overrides.
type Overrides struct {
	defaults Limits
	runtime  func() *RuntimeConfig // nil, or returning nil: no overrides
}

// NewOverrides returns the limits of defaults overridden by what runtime
// returns at each call (runtime may be nil).
func NewOverrides(defaults Limits, runtime func() *RuntimeConfig) *Overrides {
	return &Overrides{defaults: defaults, runtime: runtime}
}

// For returns the tenant's effective limits; the caller must not modify them.
func (o *Overrides) For(tenant string) *Limits {
	if rc := o.current(); rc != nil {
		if l, ok := rc.Overrides[tenant]; ok && l != nil {
			return l
		}
	}
	return &o.defaults
}

// Defaults returns the limits of a tenant without overrides.
func (o *Overrides) Defaults() *Limits { return &o.defaults }

// Tenants returns the tenants with overrides and their effective limits.
func (o *Overrides) Tenants() map[string]*Limits {
	if rc := o.current(); rc != nil {
		return rc.Overrides
	}
	return nil
}

func (o *Overrides) current() *RuntimeConfig {
	if o == nil || o.runtime == nil {
		return nil
	}
	return o.runtime()
}

// LoadRuntimeConfig decodes a runtime config strictly (an unknown key at any
// level is an error), fills every tenant's missing keys from defaults and
// validates each tenant's limits. An empty document has no overrides.
func LoadRuntimeConfig(r io.Reader, defaults Limits) (*RuntimeConfig, error) {
	var raw struct {
		Overrides map[string]yaml.Node `yaml:"overrides"`
	}
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	if err := dec.Decode(&raw); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	rc := &RuntimeConfig{Overrides: make(map[string]*Limits, len(raw.Overrides))}
	for t, node := range raw.Overrides {
		l, err := decodeTenant(&node, defaults)
		if err != nil {
			return nil, fmt.Errorf("overrides of tenant %q: %w", t, err)
		}
		if err := l.Validate(); err != nil {
			return nil, fmt.Errorf("overrides of tenant %q: %w", t, err)
		}
		rc.Overrides[t] = l
	}
	return rc, nil
}

// decodeTenant decodes one tenant's overrides over a copy of the defaults.
// A yaml.Node cannot decode strictly, so it goes through bytes again.
func decodeTenant(node *yaml.Node, defaults Limits) (*Limits, error) {
	l := defaults
	if node.Kind == 0 || node.Tag == "!!null" {
		return &l, nil
	}
	b, err := yaml.Marshal(node)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&l); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return &l, nil
}

// Validate checks values no limit can take.
func (l *Limits) Validate() error {
	v := reflect.ValueOf(l).Elem()
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		name := yamlName(v.Type().Field(i))
		switch f.Kind() {
		case reflect.Int, reflect.Int64:
			if f.Int() < 0 {
				return fmt.Errorf("%s must not be negative: %v", name, f.Interface())
			}
		case reflect.Float64:
			if f.Float() < 0 {
				return fmt.Errorf("%s must not be negative: %v", name, f.Float())
			}
		}
	}
	if l.MaxFlameGraphNodesMax > 0 && l.MaxFlameGraphNodesDefault > l.MaxFlameGraphNodesMax {
		return fmt.Errorf("max_flamegraph_nodes_default %d is larger than max_flamegraph_nodes_max %d", l.MaxFlameGraphNodesDefault, l.MaxFlameGraphNodesMax)
	}
	return nil
}

func yamlName(f reflect.StructField) string {
	n, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if n == "" {
		return f.Name
	}
	return n
}

// LimitValue is one numeric limit: its YAML name and value (durations in
// seconds, sizes in their unit).
type LimitValue struct {
	Name  string
	Value float64
}

// Values lists every limit with its value, in declaration order.
func (l *Limits) Values() []LimitValue {
	v := reflect.ValueOf(l).Elem()
	out := make([]LimitValue, 0, v.NumField())
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		var x float64
		switch {
		case f.Type() == reflect.TypeOf(time.Duration(0)):
			x = time.Duration(f.Int()).Seconds()
		case f.CanInt():
			x = float64(f.Int())
		case f.CanFloat():
			x = f.Float()
		default:
			continue
		}
		out = append(out, LimitValue{Name: yamlName(v.Type().Field(i)), Value: x})
	}
	return out
}

// Map is the limits as their YAML keys and values (durations as strings).
func (l *Limits) Map() map[string]any {
	b, err := yaml.Marshal(l)
	if err != nil {
		panic(err) // a struct of numbers always marshals
	}
	m := map[string]any{}
	if err := yaml.Unmarshal(b, &m); err != nil {
		panic(err)
	}
	return m
}

// Diff returns the keys of l whose value differs from defaults.
func Diff(l, defaults *Limits) map[string]any {
	a, d := l.Map(), defaults.Map()
	out := map[string]any{}
	for k, v := range a {
		if !reflect.DeepEqual(v, d[k]) {
			out[k] = v
		}
	}
	return out
}

// SortedTenants returns the keys of m in order.
func SortedTenants[V any](m map[string]V) []string {
	ts := make([]string, 0, len(m))
	for t := range m {
		ts = append(ts, t)
	}
	sort.Strings(ts)
	return ts
}
