// Package integration runs real hearth processes on loopback ports: crash,
// restart, durability and ring tests.
package integration

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hearth-dev/hearth/internal/load"
	"github.com/hearth-dev/hearth/internal/testutil"
)

func heapCorpus(t *testing.T) (string, int64) { return testutil.HeapCorpus(t) }

// countProfiles is testutil.CountProfiles, failing the test on error.
func countProfiles(t *testing.T, url string, ids []string, perProfile int64) (all, acked float64) {
	t.Helper()
	all, acked, err := testutil.CountProfiles(url, ids, perProfile)
	// A test injecting bucket faults retries a query that failed: a failed
	// query is not a wrong count.
	for try := 1; err != nil && try < countTries; try++ {
		time.Sleep(200 * time.Millisecond)
		all, acked, err = testutil.CountProfiles(url, ids, perProfile)
	}
	if err != nil {
		t.Fatal(err)
	}
	return all, acked
}

// countTries is how many times countProfiles asks before failing.
var countTries = 1

// TestKill9LosesNothingAcknowledged pushes with the load client while the
// ingester is killed with SIGKILL at random moments, restarts it each time,
// and checks that every acknowledged profile is there exactly once and that
// nothing unacknowledged is half there.
func TestKill9LosesNothingAcknowledged(t *testing.T) {
	dir, perProfile := heapCorpus(t)
	data := t.TempDir()
	port := testutil.FreePort(t)
	args := []string{"-data-dir=" + data, "-log.level=warn"}
	proc := testutil.StartIngester(t, port, args...)

	acks := &load.AckLog{}
	var attempted int64
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	const rounds = 4
	for round := 0; round < rounds; round++ {
		ctx, cancel := context.WithCancel(context.Background())
		sumc := make(chan load.Summary, 1)
		go func() {
			s, _ := load.Run(ctx, load.Config{URL: proc.URL, Dir: dir, Workers: 4, Series: 20, Duration: 10 * time.Second, Acked: acks.Record})
			sumc <- s
		}()
		time.Sleep(time.Duration(300+rng.IntN(1200)) * time.Millisecond)
		proc.Kill()
		time.Sleep(100 * time.Millisecond) // let in-flight pushes fail
		cancel()
		s := <-sumc
		attempted += s.Pushes + s.Abandoned
		t.Logf("round %d: %d pushes, %d acknowledged so far, errors %v", round, s.Pushes, len(acks.Acks()), s.ErrorsByCode)
		proc = testutil.StartIngester(t, port, args...)
	}
	ids := make([]string, 0, len(acks.Acks()))
	for _, a := range acks.Acks() {
		ids = append(ids, a.ID)
	}
	if len(ids) == 0 {
		t.Fatal("no push was acknowledged")
	}
	all, acked := countProfiles(t, proc.URL, ids, perProfile)
	t.Logf("acknowledged %d, attempted %d; stored: %.2f profiles, of which %.2f acknowledged", len(ids), attempted, all, acked)
	if acked != float64(len(ids)) {
		t.Errorf("acknowledged profiles: %d pushed, %.3f found", len(ids), acked)
	}
	if all != float64(int64(all)) {
		t.Errorf("stored total is %.3f profiles: a profile is half there", all)
	}
	if all < float64(len(ids)) || all > float64(attempted) {
		t.Errorf("stored %.2f profiles, want between %d acknowledged and %d attempted", all, len(ids), attempted)
	}
}
