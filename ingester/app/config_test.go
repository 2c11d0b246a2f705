package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/hearth-dev/hearth/internal/testutil"
)

// TestOperatorRenderedConfigParses loads the config file the operator renders
// (every golden ConfigMap) exactly as a pod would: with -config.file and the
// per-pod flags. A key the ingester does not know would crash-loop the pods.
func TestOperatorRenderedConfigParses(t *testing.T) {
	goldens, err := filepath.Glob(filepath.Join(testutil.RepoRoot(), "controllers", "testdata", "golden", "*.yaml"))
	if err != nil || len(goldens) == 0 {
		t.Fatalf("no operator golden files: %v", err)
	}
	n := 0
	for _, g := range goldens {
		b, err := os.ReadFile(g)
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range strings.Split(string(b), "\n---\n") {
			var obj struct {
				Kind string            `json:"kind"`
				Data map[string]string `json:"data"`
			}
			if err := yaml.Unmarshal([]byte(doc), &obj); err != nil || obj.Kind != "ConfigMap" {
				continue
			}
			for name, content := range obj.Data {
				f := filepath.Join(t.TempDir(), name)
				if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
				cfg, _, err := ParseConfig("test", []string{"-config.file=" + f, "-data-dir=" + t.TempDir(),
					"-ingester.ring.instance-id=pod-0", "-ingester.ring.instance-addr=10.0.0.1",
					"-memberlist.advertise-addr=10.0.0.1", "-memberlist.bind-addr=10.0.0.1"})
				if err != nil {
					t.Fatalf("%s: %s does not load: %v\n%s", filepath.Base(g), name, err, content)
				}
				if cfg.Ingester.Ring.InstanceID != "pod-0" || cfg.Server.HTTPListenPort != 4040 {
					t.Fatalf("%s: flags did not override the file: %+v", filepath.Base(g), cfg.Ingester.Ring)
				}
				n++
			}
		}
	}
	if n == 0 {
		t.Fatal("no ConfigMap found in the golden files")
	}
}

func TestConfigPrecedenceAndSizes(t *testing.T) {
	f := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(f, []byte("ingester:\n  max_head_bytes: 512MiB\n  max_block_duration: 30m\nwal:\n  fsync: interval\nserver:\n  http_listen_port: 5050\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := ParseConfig("test", []string{"-config.file=" + f, "-server.http-listen-port=6060"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Ingester.MaxHeadBytes != 512<<20 || cfg.Ingester.MaxBlockDuration != 30*time.Minute || cfg.WAL.Fsync.String() != "interval" || cfg.Server.HTTPListenPort != 6060 {
		t.Fatalf("%+v %v %d", cfg.Ingester, cfg.WAL.Fsync, cfg.Server.HTTPListenPort)
	}
	if err := os.WriteFile(f, []byte("ingester:\n  max_heap_bytes: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ParseConfig("test", []string{"-config.file=" + f}); err == nil || !strings.Contains(err.Error(), "max_heap_bytes") {
		t.Fatalf("unknown key: %v", err)
	}
}
