package integration

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/hearth-dev/hearth/internal/load"
	"github.com/hearth-dev/hearth/internal/testutil"
)

// TestTLSSwitchRolling turns TLS on and then off on a running three-node cluster
// (replication factor 3) under load, the way the operator does: each node restarted
// in turn on the switch step (TLS and plain served, plain peers called plainly,
// memberlist dialled plain), then each on the target. After every restart the ring
// is whole (3 ACTIVE) on every node, so gossip crosses the modes, and every push
// acknowledged over the whole run is found afterwards through every node.
func TestTLSSwitchRolling(t *testing.T) {
	const serverName = "hearth-headless.test.svc"
	ca := testutil.NewCA(t, "switch-ca")
	bucket := t.TempDir()
	type nd struct {
		id                 string
		port, internal, ml int
		dir                string
		files              testutil.TLSFiles
		proc               *testutil.Process
	}
	nodes := make([]*nd, 3)
	for i := range nodes {
		x := &nd{id: fmt.Sprintf("ingester-%d", i), port: testutil.FreePort(t), internal: testutil.FreePort(t), ml: testutil.FreePort(t), dir: t.TempDir()}
		x.files = testutil.WriteTLSDir(t, filepath.Join(t.TempDir(), "tls"), ca.Issue(t, x.id, []string{serverName}), ca.PEM)
		nodes[i] = x
	}
	modeArgs := func(x *nd, mode string) []string {
		switch mode {
		case "plain":
			return nil
		case "step":
			return append(tlsArgs(x.files, serverName), "-server.internal-tls-accept-plain", "-ingester.client.tls-plain-fallback",
				"-memberlist.tls-accept-plain", "-memberlist.tls-dial-plain")
		default: // tls
			return append(tlsArgs(x.files, serverName), "-memberlist.tls-accept-plain")
		}
	}
	start := func(x *nd, mode string) {
		args := append([]string{"-data-dir=" + x.dir, "-log.level=info", "-ingester.ring.instance-id=" + x.id,
			"-memberlist.bind-port=" + strconv.Itoa(x.ml), "-server.internal-listen-port=" + strconv.Itoa(x.internal),
			"-storage.filesystem.dir=" + bucket, "-ingester.ring.replication-factor=3",
			"-ingester.ring.heartbeat-period=500ms", "-ingester.ring.heartbeat-timeout=5s", "-shutdown-delay=1s"}, modeArgs(x, mode)...)
		for _, y := range nodes {
			if y != x {
				args = append(args, "-memberlist.join=127.0.0.1:"+strconv.Itoa(y.ml))
			}
		}
		x.proc = testutil.StartIngester(t, x.port, args...)
	}
	whole := func(what string) {
		t.Helper()
		for i := 0; ; i++ {
			ok, last := true, ""
			for _, x := range nodes {
				st := ringOf(t, x.proc.URL).states()
				if len(st) != 3 || slices.ContainsFunc(slices.Collect(maps.Values(st)), func(s string) bool { return s != "ACTIVE" }) {
					ok, last = false, fmt.Sprintf("%s sees %v", x.id, st)
				}
			}
			if ok {
				return
			}
			if i > 600 {
				t.Fatalf("%s: the ring is not whole: %s", what, last)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for _, x := range nodes {
		start(x, "plain")
	}
	whole("plain")

	dir, perProfile := testutil.HeapCorpus(t)
	acks := &load.AckLog{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// One load per node: each fails while its own node restarts (the test runs no
	// load balancer); every acknowledged push must stay.
	type result struct {
		s   load.Summary
		err error
	}
	done := make(chan result, 3)
	for _, x := range nodes {
		url := x.proc.URL
		go func() {
			s, err := load.Run(ctx, load.Config{URL: url, Dir: dir, Workers: 1, Rate: 20, Series: 10, Acked: acks.Record})
			done <- result{s, err}
		}()
	}
	time.Sleep(time.Second)
	for _, mode := range []string{"step", "tls", "step", "plain"} {
		for _, x := range nodes {
			if err := x.proc.Stop(30 * time.Second); err != nil {
				t.Fatalf("%s: stop: %v", x.id, err)
			}
			start(x, mode)
			whole(x.id + " on " + mode)
			mark := len(acks.Acks())
			for i := 0; len(acks.Acks()) < mark+10; i++ {
				if i > 400 {
					t.Fatalf("%s on %s: pushes are not acknowledged any more (%d)", x.id, mode, len(acks.Acks()))
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		t.Logf("every node on %s: %d pushes acknowledged so far", mode, len(acks.Acks()))
	}
	cancel()
	var pushes, errs int64
	for range nodes {
		r := <-done
		pushes += r.s.Pushes
		errs += r.s.Errors
	}
	t.Logf("TLS on and off through the switch step: %d pushes, %d failed (each load's own node restarted 4 times), %d acknowledged", pushes, errs, len(acks.Acks()))
	var ids []string
	for _, a := range acks.Acks() {
		ids = append(ids, a.ID)
	}
	for _, x := range nodes {
		all, got, err := testutil.CountProfiles(x.proc.URL, ids, perProfile)
		if err != nil {
			t.Fatal(err)
		}
		if got != float64(len(ids)) || all < float64(len(ids)) {
			t.Fatalf("through %s: %v of %d acknowledged profiles found (%v stored)", x.id, got, len(ids), all)
		}
	}
}
