package platform

import (
	"slices"
	"strings"
	"testing"
)

func TestExpand(t *testing.T) {
	vars := map[string]string{"POD_IP": "127.1.2.3", "POD_NAME": "x-0"}
	for in, want := range map[string]string{
		"-addr=$(POD_IP)":   "-addr=127.1.2.3",
		"$(POD_NAME)-$(NO)": "x-0-$(NO)",
		"$$(POD_IP)":        "$(POD_IP)",
		"a$b$(":             "a$b$(",
	} {
		if got := expand(in, vars); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRewriter(t *testing.T) {
	rw := &rewriter{
		mounts: [][2]string{{"/etc/hearth", "/p/cfg"}, {"/data", "/p/pv"}},
		resolve: func(host string) ([]string, bool) {
			if host == "h-headless.ns.svc" {
				return []string{"127.0.0.2", "127.0.0.3"}, true
			}
			return nil, false
		},
	}
	for in, want := range map[string]string{
		"-data-dir=/data":                 "-data-dir=/p/pv",
		"-config.file=/etc/hearth/h.yaml": "-config.file=/p/cfg/h.yaml",
		"-x=/database":                    "-x=/database",
		"/data/tokens":                    "/p/pv/tokens",
		"-memberlist.join=other.svc:7946": "-memberlist.join=other.svc:7946",
	} {
		if got := rw.arg(in); !slices.Equal(got, []string{want}) {
			t.Errorf("arg(%q) = %q, want %q", in, got, want)
		}
	}
	if got := rw.arg("-memberlist.join=h-headless.ns.svc:7946"); !slices.Equal(got, []string{"-memberlist.join=127.0.0.2:7946", "-memberlist.join=127.0.0.3:7946"}) {
		t.Errorf("join arg: %q", got)
	}
	out := string(rw.file("hearth.yaml", []byte("ingester:\n  ring:\n    tokens_file_path: /data/tokens\nmemberlist:\n  join_members:\n  - h-headless.ns.svc:7946\n")))
	for _, want := range []string{"tokens_file_path: /p/pv/tokens", "- 127.0.0.2:7946", "- 127.0.0.3:7946"} {
		if !strings.Contains(out, want) {
			t.Errorf("rewritten YAML lacks %q:\n%s", want, out)
		}
	}
}
