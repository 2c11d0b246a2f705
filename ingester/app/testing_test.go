package app

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/grafana/pyroscope/api/gen/proto/go/push/v1/pushv1connect"
	"github.com/grafana/pyroscope/api/gen/proto/go/querier/v1/querierv1connect"

	"github.com/hearth-dev/hearth/internal/testutil"
)

// testIngester runs a real ingester on a loopback port with its own data dir.
type testIngester struct {
	*App
	URL     string
	Push    pushv1connect.PusherServiceClient
	Querier querierv1connect.QuerierServiceClient
}

func startIngester(t *testing.T, args ...string) *testIngester {
	t.Helper()
	base := []string{"-server.http-listen-address=127.0.0.1", "-server.http-listen-port=0", "-data-dir=" + t.TempDir(),
		"-server.internal-listen-address=127.0.0.1", "-server.internal-listen-port=0",
		"-memberlist.bind-port=" + strconv.Itoa(testutil.FreePort(t)), "-ingester.ring.min-ready-duration=0s", "-ingester.ring.instance-id=test"}
	cfg, _, err := ParseConfig("test", append(base, args...))
	if err != nil {
		t.Fatal(err)
	}
	level := slog.LevelWarn
	if os.Getenv("HEARTH_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ing, err := New(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ing.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ingester stopped with %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("ingester did not stop within 30s")
		}
	})
	url := "http://" + ing.Addr()
	for i := 0; ; i++ { // the WAL replays before /ready
		if ing.Ready() == nil {
			break
		}
		if i > 3000 {
			t.Fatal("ingester not ready after 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return &testIngester{
		App:     ing,
		URL:     url,
		Push:    pushv1connect.NewPusherServiceClient(http.DefaultClient, url),
		Querier: querierv1connect.NewQuerierServiceClient(http.DefaultClient, url),
	}
}

func connectCode(err error) connect.Code {
	if err == nil {
		return 0
	}
	return connect.CodeOf(err)
}
