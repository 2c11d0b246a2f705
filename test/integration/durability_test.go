package integration

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hearth-dev/hearth/internal/load"
	"github.com/hearth-dev/hearth/internal/s3test"
	"github.com/hearth-dev/hearth/internal/testutil"
)

func s3Args(s *s3test.Server) []string {
	return []string{
		"-storage.backend=s3", "-storage.s3.bucket-name=" + s.Bucket, "-storage.s3.endpoint=" + s.Endpoint,
		"-storage.s3.region=" + s.Region, "-storage.s3.insecure", "-storage.s3.force-path-style",
	}
}

func flush(t *testing.T, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/ingester/flush?wait=true", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("flush: %s", resp.Status)
	}
}

func ackIDs(acks *load.AckLog) []string {
	var ids []string
	for _, a := range acks.Acks() {
		ids = append(ids, a.ID)
	}
	return ids
}

// TestKill9DuringCutsAndUploads cuts a block every second into a real S3
// server while the load runs and the ingester is killed at random moments
// (so during block writes and uploads too). Every acknowledged profile must
// be there once; and a fresh ingester with an empty disk must find all of
// them in the bucket after a final flush.
func TestKill9DuringCutsAndUploads(t *testing.T) {
	s3 := s3test.Start(t)
	s3.SetEnv(t)
	dir, perProfile := heapCorpus(t)
	port := testutil.FreePort(t)
	args := append([]string{"-data-dir=" + t.TempDir(), "-log.level=warn", "-ingester.max-block-duration=1s"}, s3Args(s3)...)
	proc := testutil.StartIngester(t, port, args...)

	acks := &load.AckLog{}
	var attempted int64
	rng := rand.New(rand.NewPCG(2, uint64(time.Now().UnixNano())))
	for round := 0; round < 4; round++ {
		ctx, cancel := context.WithCancel(context.Background())
		sumc := make(chan load.Summary, 1)
		go func() {
			s, _ := load.Run(ctx, load.Config{URL: proc.URL, Dir: dir, Workers: 4, Series: 20, Duration: 20 * time.Second, Acked: acks.Record})
			sumc <- s
		}()
		time.Sleep(time.Duration(1000+rng.IntN(2500)) * time.Millisecond)
		proc.Kill()
		cancel()
		s := <-sumc
		attempted += s.Pushes + s.Abandoned
		proc = testutil.StartIngester(t, port, args...)
	}
	ids := ackIDs(acks)
	if len(ids) == 0 {
		t.Fatal("nothing acknowledged")
	}
	all, acked := countProfiles(t, proc.URL, ids, perProfile)
	t.Logf("acknowledged %d of %d attempted; stored %.2f, acknowledged among them %.2f", len(ids), attempted, all, acked)
	if acked != float64(len(ids)) || all != float64(int64(all)) || all > float64(attempted) {
		t.Fatalf("after the kills: acknowledged %d, found %.3f of them, %.3f in all (attempted %d)", len(ids), acked, all, attempted)
	}

	// Everything reaches the bucket: a new ingester with an empty disk answers from it alone.
	flush(t, proc.InternalURL)
	proc.Kill()
	fresh := testutil.StartIngester(t, testutil.FreePort(t), append([]string{"-data-dir=" + t.TempDir(), "-log.level=warn"}, s3Args(s3)...)...)
	all2, acked2 := countProfiles(t, fresh.URL, ids, perProfile)
	if acked2 != float64(len(ids)) || all2 != all {
		t.Fatalf("from the bucket alone: %.3f acknowledged of %d, %.3f in all (the ingester had %.3f)", acked2, len(ids), all2, all)
	}
}

// TestBucketOutage keeps pushing while the S3 server is down: writes go on,
// and once it is back everything is uploaded.
func TestBucketOutage(t *testing.T) {
	s3 := s3test.Start(t)
	s3.SetEnv(t)
	dir, perProfile := heapCorpus(t)
	args := append([]string{"-data-dir=" + t.TempDir(), "-log.level=warn", "-ingester.max-block-duration=500ms"}, s3Args(s3)...)
	proc := testutil.StartIngester(t, testutil.FreePort(t), args...)

	acks := &load.AckLog{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan load.Summary, 1)
	go func() {
		s, _ := load.Run(ctx, load.Config{URL: proc.URL, Dir: dir, Workers: 2, Rate: 50, Series: 10, Duration: 6 * time.Second, Acked: acks.Record})
		done <- s
	}()
	time.Sleep(time.Second)
	s3.Stop()
	before := len(acks.Acks())
	time.Sleep(3 * time.Second)
	during := len(acks.Acks()) - before
	s3.Restart()
	sum := <-done
	if during == 0 {
		t.Fatalf("no push was acknowledged while the bucket was down: %v", sum.ErrorsByCode)
	}
	if sum.Errors > 0 {
		t.Fatalf("pushes failed during the outage: %v", sum.ErrorsByCode)
	}
	flush(t, proc.InternalURL)
	ids := ackIDs(acks)
	fresh := testutil.StartIngester(t, testutil.FreePort(t), append([]string{"-data-dir=" + t.TempDir(), "-log.level=warn"}, s3Args(s3)...)...)
	all, acked := countProfiles(t, fresh.URL, ids, perProfile)
	t.Logf("%d acknowledged (%d while the bucket was down); the bucket holds %.2f", len(ids), during, all)
	// A push the client gave up on (the load's end) may still have been stored whole.
	if acked != float64(len(ids)) || all != float64(int64(all)) || all > float64(sum.Pushes+sum.Abandoned) {
		t.Fatalf("the bucket holds %.3f of %d acknowledged (%.3f in all, %d attempted)", acked, len(ids), all, sum.Pushes)
	}
}

// TestRestartWritesTheHeadWhenTheWALIsLarge: with -ingester.flush-on-stop-wal-bytes, a
// normal stop writes the head into local blocks, so the next start replays nothing and
// still answers every acknowledged profile exactly once, then uploads those blocks; without
// it, the next start replays the WAL.
func TestRestartWritesTheHeadWhenTheWALIsLarge(t *testing.T) {
	dir, perProfile := heapCorpus(t)
	data, bucketDir := t.TempDir(), t.TempDir()
	port := testutil.FreePort(t)
	base := []string{"-data-dir=" + data, "-log.level=warn", "-storage.filesystem.dir=" + bucketDir}
	acks := &load.AckLog{}
	var attempted int64
	push := func(url string) {
		s, err := load.Run(context.Background(), load.Config{URL: url, Dir: dir, Workers: 2, Series: 10, Duration: 2 * time.Second, Acked: acks.Record})
		if err != nil || s.Profiles == 0 {
			t.Fatalf("load: %v (%d acknowledged)", err, s.Profiles)
		}
		attempted += s.Pushes + s.Abandoned
	}

	for _, tc := range []struct {
		flag       string
		wantReplay bool
	}{
		{"-ingester.flush-on-stop-wal-bytes=1KiB", false},
		{"-ingester.flush-on-stop-wal-bytes=0", true},
	} {
		proc := testutil.StartIngester(t, port, append(base, tc.flag)...)
		push(proc.URL)
		if err := proc.Stop(time.Minute); err != nil {
			t.Fatal(err)
		}
		// The next start (always with the flag off: it only acts on a stop).
		proc = testutil.StartIngester(t, port, base...)
		replayed := metric(t, proc.URL, "hearth_wal_replayed_profiles_total")
		t.Logf("%s: the next start replayed %.0f profiles", tc.flag, replayed)
		if got := replayed > 0; got != tc.wantReplay {
			t.Errorf("%s: the next start replayed %.0f profiles from the WAL", tc.flag, replayed)
		}
		ids := ackIDs(acks)
		all, acked := countProfiles(t, proc.URL, ids, perProfile)
		if acked != float64(len(ids)) || all > float64(attempted) || all != float64(int64(all)) {
			t.Fatalf("%s: after the restart: acknowledged %d, found %.3f of them, %.3f in all (attempted %d)", tc.flag, len(ids), acked, all, attempted)
		}
		if err := proc.Stop(time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	// The blocks written on stop were uploaded after the start: the bucket alone has
	// every profile acknowledged in the first round, which no flush ever covered otherwise.
	fresh := testutil.StartIngester(t, testutil.FreePort(t), "-data-dir="+t.TempDir(), "-log.level=warn", "-storage.filesystem.dir="+bucketDir)
	_, fromBucket := countProfiles(t, fresh.URL, ackIDs(acks), perProfile)
	if fromBucket == 0 {
		t.Errorf("the bucket holds none of the acknowledged profiles: the blocks written on stop were not uploaded")
	}
	t.Logf("the bucket alone holds %.0f of the %d acknowledged profiles", fromBucket, len(acks.Acks()))
}

// metric sums the samples of one metric family at url/metrics.
func metric(t *testing.T, url, name string) float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		sum += v
	}
	return sum
}
