package otlp

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hearth-dev/hearth/internal/testutil"
)

// startRing runs n real ingesters forming one ring (replication factor 3)
// over a shared filesystem bucket, and waits until the first sees all of
// them ACTIVE.
func startRing(t *testing.T, n int) []*testutil.Process {
	t.Helper()
	bucket := t.TempDir()
	ml := make([]int, n)
	for i := range ml {
		ml[i] = testutil.FreePort(t)
	}
	args := make([][]string, n)
	ports := make([]int, n)
	for i := range args {
		ports[i] = testutil.FreePort(t)
		args[i] = []string{"-data-dir=" + t.TempDir(), "-log.level=warn", "-storage.filesystem.dir=" + bucket,
			"-ingester.ring.instance-id=otlp-" + strconv.Itoa(i), "-memberlist.bind-port=" + strconv.Itoa(ml[i]),
			"-ingester.ring.heartbeat-period=500ms"}
		for j := range ml {
			if j != i {
				args[i] = append(args[i], "-memberlist.join=127.0.0.1:"+strconv.Itoa(ml[j]))
			}
		}
	}
	procs := make([]*testutil.Process, n)
	var wg sync.WaitGroup
	for i := range procs {
		wg.Add(1)
		go func() { defer wg.Done(); procs[i] = testutil.StartIngester(t, ports[i], args[i]...) }()
	}
	wg.Wait()
	deadline := time.Now().Add(60 * time.Second)
	for active := 0; active < n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d ingesters ACTIVE after 60 s", active, n)
		}
		active = activeMembers(t, procs[0])
		time.Sleep(100 * time.Millisecond)
	}
	return procs
}

func activeMembers(t *testing.T, p *testutil.Process) int {
	req, _ := http.NewRequest(http.MethodGet, p.URL+"/ring", nil)
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var page struct {
		Shards []struct{ State string } `json:"shards"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		return 0
	}
	n := 0
	for _, s := range page.Shards {
		if s.State == "ACTIVE" {
			n++
		}
	}
	return n
}

// TestRingCountsOnce: an export to one ingester of a three-ingester ring is
// replicated to all three and read from another one counted once, before
// and after every ingester cuts its head into blocks and uploads them.
func TestRingCountsOnce(t *testing.T) {
	procs := startRing(t, 3)
	req := loadTestdata(t)
	setRun(req, "ring")
	ctx, cancel := exportCtx("")
	defer cancel()
	if _, err := grpcClient(t, procs[0]).Export(ctx, req); err != nil {
		t.Fatal(err)
	}
	checkStored(t, procs[2], req, "ring", "")

	for i, p := range procs {
		resp, err := http.Post(p.InternalURL+"/ingester/flush?wait=true", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("flush of ingester %d: %s", i, resp.Status)
		}
	}
	checkStored(t, procs[1], req, "ring", "")
}
