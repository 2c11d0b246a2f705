package validation

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/selector"
)

// Usage groups (Pyroscope's distributor_usage_groups): a tenant names parts
// of its data by series selector, and the front door counts each group's
// received and discarded bytes, so an operator can tell which team or
// service sends what. A profile counts in every group it matches, and in
// UsageGroupOther when it matches none.
const (
	MaxUsageGroups  = 50      // per tenant, as Pyroscope
	UsageGroupOther = "other" // reserved: the profiles no group matched

	labelPlaceholder = "${labels."
)

// UsageGroups is a tenant's distributor_usage_groups: usage group name →
// series selector, parsed and checked when the config is loaded. A name may
// take label values from the matched series (${labels.service_name}). The
// nil value has no groups.
type UsageGroups struct {
	raw    map[string]string
	groups []usageGroup // sorted by name
}

type usageGroup struct {
	name     string // as configured
	matchers []*selector.Matcher
	template []namePart // nil: the name is static
}

// namePart is a literal piece of a name template or, with label set, a
// placeholder for that label's value.
type namePart struct {
	text  string
	label bool
}

// NewUsageGroups parses and checks a name → selector map: at most
// MaxUsageGroups, names non-empty (surrounding blanks trimmed), valid UTF-8
// and not UsageGroupOther, selectors and placeholders that parse.
func NewUsageGroups(m map[string]string) (*UsageGroups, error) {
	if len(m) > MaxUsageGroups {
		return nil, fmt.Errorf("at most %d usage groups per tenant, got %d", MaxUsageGroups, len(m))
	}
	u := &UsageGroups{raw: make(map[string]string, len(m))}
	for name, sel := range m {
		if !utf8.ValidString(name) {
			return nil, fmt.Errorf("usage group name %q is not valid UTF-8", name)
		}
		name = strings.TrimSpace(name)
		switch {
		case name == "":
			return nil, errors.New("a usage group name is empty")
		case name == UsageGroupOther:
			return nil, fmt.Errorf("usage group name %q is reserved for the profiles no group matches", UsageGroupOther)
		}
		if _, dup := u.raw[name]; dup {
			return nil, fmt.Errorf("usage group %q is defined twice (names are trimmed of blanks)", name)
		}
		if strings.TrimSpace(sel) == "" {
			return nil, fmt.Errorf("usage group %q: the selector is empty (use {} to match every series)", name)
		}
		ms, err := selector.Parse(sel)
		if err != nil {
			return nil, fmt.Errorf("usage group %q: %w", name, err)
		}
		g := usageGroup{name: name, matchers: ms}
		if strings.Contains(name, labelPlaceholder) {
			if g.template, err = parseNameTemplate(name); err != nil {
				return nil, fmt.Errorf("usage group %q: %w", name, err)
			}
		}
		u.raw[name] = sel
		u.groups = append(u.groups, g)
	}
	sort.Slice(u.groups, func(i, j int) bool { return u.groups[i].name < u.groups[j].name })
	return u, nil
}

// parseNameTemplate splits a name into literals and ${labels.NAME}
// placeholders.
func parseNameTemplate(name string) ([]namePart, error) {
	var parts []namePart
	for rest := name; rest != ""; {
		before, after, found := strings.Cut(rest, labelPlaceholder)
		if before != "" {
			parts = append(parts, namePart{text: before})
		}
		if !found {
			break
		}
		label, tail, closed := strings.Cut(after, "}")
		switch {
		case !closed:
			return nil, fmt.Errorf("placeholder %q is not closed with '}'", labelPlaceholder+after)
		case label == "":
			return nil, fmt.Errorf("placeholder %q names no label", labelPlaceholder+"}")
		case !ValidLabelName(label):
			return nil, fmt.Errorf("placeholder %q: %q is not a label name", labelPlaceholder+label+"}", label)
		}
		parts = append(parts, namePart{text: label, label: true})
		rest = tail
	}
	return parts, nil
}

// Len is the number of groups configured.
func (u *UsageGroups) Len() int {
	if u == nil {
		return 0
	}
	return len(u.groups)
}

// Match returns the names of the groups a series matches, templates filled
// in, each once, in order; UsageGroupOther when none matches. A matcher on
// a label the series does not carry does not match (Pyroscope's rule, unlike
// a query selector's), and a template whose label is missing or empty
// skips its group.
func (u *UsageGroups) Match(ls model.Labels) []string {
	var out []string
	if u != nil {
		for i := range u.groups {
			g := &u.groups[i]
			if !matchesAll(g.matchers, ls) {
				continue
			}
			name, ok := g.name, true
			if g.template != nil {
				name, ok = expand(g.template, ls)
			}
			if ok && !contains(out, name) {
				out = append(out, name)
			}
		}
	}
	if len(out) == 0 {
		return []string{UsageGroupOther}
	}
	return out
}

func matchesAll(ms []*selector.Matcher, ls model.Labels) bool {
	for _, m := range ms {
		if !ls.Has(m.Name) || !m.Matches(ls.Get(m.Name)) {
			return false
		}
	}
	return true
}

func expand(parts []namePart, ls model.Labels) (string, bool) {
	var b strings.Builder
	for _, p := range parts {
		if !p.label {
			b.WriteString(p.text)
			continue
		}
		v := ls.Get(p.text)
		if v == "" {
			return "", false
		}
		b.WriteString(v)
	}
	return b.String(), true
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// UnmarshalYAML decodes and checks a name → selector mapping.
func (u *UsageGroups) UnmarshalYAML(n *yaml.Node) error {
	var m map[string]string
	if err := n.Decode(&m); err != nil {
		return fmt.Errorf("distributor_usage_groups must map usage group names to series selectors: %w", err)
	}
	parsed, err := NewUsageGroups(m)
	if err != nil {
		return fmt.Errorf("distributor_usage_groups: %w", err)
	}
	*u = *parsed
	return nil
}

// MarshalYAML renders the groups as configured (names trimmed).
func (u *UsageGroups) MarshalYAML() (any, error) {
	if u == nil {
		return map[string]string{}, nil
	}
	return u.raw, nil
}
