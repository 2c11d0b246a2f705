package integration

import (
	"context"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/hearth-dev/hearth/ingester/load"
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
	flush(t, proc.URL)
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
	flush(t, proc.URL)
	ids := ackIDs(acks)
	fresh := testutil.StartIngester(t, testutil.FreePort(t), append([]string{"-data-dir=" + t.TempDir(), "-log.level=warn"}, s3Args(s3)...)...)
	all, acked := countProfiles(t, fresh.URL, ids, perProfile)
	t.Logf("%d acknowledged (%d while the bucket was down); the bucket holds %.2f", len(ids), during, all)
	// A push the client gave up on (the load's end) may still have been stored whole.
	if acked != float64(len(ids)) || all != float64(int64(all)) || all > float64(sum.Pushes+sum.Abandoned) {
		t.Fatalf("the bucket holds %.3f of %d acknowledged (%.3f in all, %d attempted)", acked, len(ids), all, sum.Pushes)
	}
}
