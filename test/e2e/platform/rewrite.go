package platform

import (
	"net"
	"strings"

	"sigs.k8s.io/yaml"
)

// rewriter turns what a container sees (mount paths, cluster DNS names) into what a local
// process can use (per-pod directories, pod IPs).
type rewriter struct {
	mounts  [][2]string // mount path → host directory, longest mount path first
	resolve func(host string) (ips []string, isClusterName bool)
}

// path rewrites every occurrence of a mount path in s that stands as a path: at the start
// or after one of `=:, "'` and followed by the end, `/` or one of `:, "'`.
func (rw *rewriter) path(s string) string {
	for _, m := range rw.mounts {
		from, to := m[0], m[1]
		var b strings.Builder
		i := 0
		for {
			j := strings.Index(s[i:], from)
			if j < 0 {
				b.WriteString(s[i:])
				break
			}
			j += i
			end := j + len(from)
			before := j == 0 || strings.ContainsRune("=:, \"'", rune(s[j-1]))
			after := end == len(s) || strings.ContainsRune("/:, \"'\n", rune(s[end]))
			b.WriteString(s[i:j])
			if before && after {
				b.WriteString(to)
			} else {
				b.WriteString(from)
			}
			i = end
		}
		s = b.String()
	}
	return s
}

// hostPort resolves a "[dns+]name:port" that names a cluster Service to "ip:port" values.
func (rw *rewriter) hostPort(v string) ([]string, bool) {
	v = strings.TrimPrefix(v, "dns+") // an IP needs no lookup
	host, port, err := net.SplitHostPort(v)
	if err != nil || rw.resolve == nil {
		return nil, false
	}
	ips, ok := rw.resolve(host)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(ips))
	for _, ip := range ips {
		out = append(out, net.JoinHostPort(ip, port))
	}
	return out, true
}

// arg rewrites one command-line argument; "-flag=<svc>.<ns>.svc:port" becomes one
// "-flag=ip:port" per resolved pod (possibly none).
func (rw *rewriter) arg(s string) []string {
	s = rw.path(s)
	if i := strings.IndexByte(s, '='); i > 0 && strings.HasPrefix(s, "-") {
		if hp, ok := rw.hostPort(s[i+1:]); ok {
			out := make([]string, 0, len(hp))
			for _, v := range hp {
				out = append(out, s[:i+1]+v)
			}
			return out
		}
	}
	return []string{s}
}

// file rewrites a materialized file: YAML files value by value (a list entry naming a
// Service becomes one entry per pod), anything else by mount path only.
func (rw *rewriter) file(name string, b []byte) []byte {
	if !strings.HasSuffix(name, ".yaml") && !strings.HasSuffix(name, ".yml") {
		return []byte(rw.path(string(b)))
	}
	var doc any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return []byte(rw.path(string(b)))
	}
	out, err := yaml.Marshal(rw.value(doc))
	if err != nil {
		return []byte(rw.path(string(b)))
	}
	return out
}

func (rw *rewriter) value(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = rw.value(e)
		}
		return x
	case []any:
		out := make([]any, 0, len(x))
		for _, e := range x {
			if s, ok := e.(string); ok {
				if hp, ok := rw.hostPort(s); ok {
					for _, h := range hp {
						out = append(out, h)
					}
					continue
				}
			}
			out = append(out, rw.value(e))
		}
		return out
	case string:
		if hp, ok := rw.hostPort(x); ok {
			if len(hp) > 0 {
				return hp[0]
			}
			return x
		}
		return rw.path(x)
	default:
		return v
	}
}
