package compactor

import (
	"flag"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestConfigFlagsAndYAML(t *testing.T) {
	var c Config
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	c.RegisterFlags(fs)
	if err := fs.Parse([]string{"-compactor.block-ranges=2h,8h", "-compactor.tenant-retention-periods=a=24h,b=0s", "-compactor.blocks-retention-period=720h"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.BlockRanges.String() != "2h0m0s,8h0m0s" || c.Retention("a") != 24*time.Hour || c.Retention("b") != 0 || c.Retention("c") != 720*time.Hour {
		t.Fatalf("flags: ranges %s, retention a=%s b=%s c=%s", c.BlockRanges.String(), c.Retention("a"), c.Retention("b"), c.Retention("c"))
	}
	var y Config
	err := yaml.Unmarshal([]byte("block_ranges: [1h, 2h]\ncompaction_interval: 1m\ntenant_retention_periods: {x: 48h}\n"), &y)
	if err != nil || len(y.BlockRanges) != 2 || y.BlockRanges[1] != 2*time.Hour || y.TenantRetention["x"] != 48*time.Hour {
		t.Fatalf("yaml: %v %+v", err, y)
	}
	for _, bad := range []string{"1h,90m", "2h,1h", "0s"} {
		c := Config{CompactionInterval: time.Minute}
		if err := c.BlockRanges.Set(bad); err == nil {
			if err := c.Validate(); err == nil {
				t.Errorf("block ranges %q accepted", bad)
			}
		}
	}
}
