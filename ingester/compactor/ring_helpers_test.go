package compactor

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/grafana/dskit/kv/consul"
	dskitring "github.com/grafana/dskit/ring"
	"github.com/grafana/dskit/services"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearth-dev/hearth/ingester/ring"
)

// fleetRing is a dskit ring of n ACTIVE members ("ing-0".."ing-<n-1>", 128
// seeded tokens each) over an in-memory KV: the ring a fleet's ingesters
// see, without their processes.
func fleetRing(tb testing.TB, n int) *dskitring.Ring {
	tb.Helper()
	kv, closer := consul.NewInMemoryClient(dskitring.GetCodec(), log.NewNopLogger(), nil)
	tb.Cleanup(func() { closer.Close() })
	desc := dskitring.NewDesc()
	rng := rand.New(rand.NewPCG(uint64(n), 21))
	taken := map[uint32]bool{}
	for i := 0; i < n; i++ {
		var toks []uint32
		for len(toks) < 128 {
			t := rng.Uint32()
			if !taken[t] {
				taken[t] = true
				toks = append(toks, t)
			}
		}
		slices.Sort(toks)
		desc.AddIngester(fmt.Sprintf("ing-%d", i), fmt.Sprintf("127.0.0.1:%d", 10000+i), "", toks, dskitring.ACTIVE, time.Now(), false, time.Time{}, nil)
	}
	ctx := context.Background()
	if err := kv.CAS(ctx, "ring", func(any) (any, bool, error) { return desc, true, nil }); err != nil {
		tb.Fatal(err)
	}
	r, err := dskitring.NewWithStoreClientAndStrategy(dskitring.Config{HeartbeatTimeout: 24 * time.Hour, ReplicationFactor: 1},
		"ring", "ring", kv, dskitring.NewDefaultReplicationStrategy(), prometheus.NewRegistry(), log.NewNopLogger())
	if err != nil {
		tb.Fatal(err)
	}
	if err := services.StartAndAwaitRunning(ctx, r); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = services.StopAndAwaitTerminated(context.Background(), r) })
	if got := r.InstancesCount(); got != n {
		tb.Fatalf("ring of %d members, want %d", got, n)
	}
	return r
}

// member wires a compactor as member id of rr with the given tenant shard
// size, as ingester/app does with its ring.
func member(rr dskitring.ReadRing, id string, size int) (func(string, uint32) (bool, error), func(string) (bool, error)) {
	owns := func(tenant string, key uint32) (bool, error) {
		o, err := ring.ShardOwnerIn(rr, tenant, size, key)
		return o == id, err
	}
	inShard := func(tenant string) (bool, error) { return ring.ShardOf(rr, tenant, size).HasInstance(id), nil }
	return owns, inShard
}
