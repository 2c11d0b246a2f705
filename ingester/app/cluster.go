package app

import (
	"context"
	"net/http"

	dskitring "github.com/grafana/dskit/ring"

	"github.com/hearth-dev/hearth/ingester/distributor"
	"github.com/hearth-dev/hearth/ingester/head"
	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/push"
	"github.com/hearth-dev/hearth/ingester/remote"
	"github.com/hearth-dev/hearth/ingester/ring"
)

// ringAdapter gives the distributor and the remote source the ring lookups
// they need, in their own small types.
type ringAdapter struct{ r *ring.Ring }

func convertSet(rs dskitring.ReplicationSet) distributor.ReplicationSet {
	out := distributor.ReplicationSet{MaxErrors: rs.MaxErrors, MaxUnavailableZones: rs.MaxUnavailableZones}
	for _, in := range rs.Instances {
		out.Instances = append(out.Instances, distributor.Instance{ID: in.Id, Addr: in.Addr, Zone: in.Zone})
	}
	return out
}

func (a ringAdapter) ReplicationSet(token uint32) (distributor.ReplicationSet, error) {
	rs, err := a.r.ReplicationSet(token)
	if err != nil {
		return distributor.ReplicationSet{}, err
	}
	return convertSet(rs), nil
}

func (a ringAdapter) ReadSet() (distributor.ReplicationSet, error) {
	rs, err := a.r.ReadSet()
	if err != nil {
		return distributor.ReplicationSet{}, err
	}
	return convertSet(rs), nil
}

func (a ringAdapter) TokenFor(tenant string, labels model.Labels) uint32 {
	return ring.TokenFor(tenant, labels)
}

// cluster is what exists once the ingester has joined the ring.
type cluster struct {
	ring        *ring.Ring
	distributor *distributor.Distributor
	remote      *remote.Source
}

// distributorAppender is the push handler's appender: the distributor once
// the ring is joined.
type distributorAppender struct{ ing *Ingester }

func (a distributorAppender) Append(ctx context.Context, tenant string, ps []push.Profile) error {
	c := a.ing.cluster.Load()
	if c == nil {
		return errStarting
	}
	return c.distributor.Append(ctx, tenant, ps)
}

// remoteSource reads the other ingesters once the ring is joined.
type remoteSource struct{ ing *Ingester }

func (a remoteSource) Select(ctx context.Context, tenant, ptype string, match func(model.Labels) bool, start, end int64) ([]head.Selection, error) {
	c := a.ing.cluster.Load()
	if c == nil {
		return nil, errStarting
	}
	return c.remote.Select(ctx, tenant, ptype, match, start, end)
}

func (a remoteSource) SeriesLabels(ctx context.Context, tenant string, match func(model.Labels) bool, start, end int64) ([]model.Labels, error) {
	c := a.ing.cluster.Load()
	if c == nil {
		return nil, errStarting
	}
	return c.remote.SeriesLabels(ctx, tenant, match, start, end)
}

// ringHandler serves /ring and the lifecycle endpoints once the ring exists.
func (ing *Ingester) ringHandler(w http.ResponseWriter, r *http.Request) {
	c := ing.cluster.Load()
	if c == nil {
		http.Error(w, errStarting.Error(), http.StatusServiceUnavailable)
		return
	}
	c.ring.Handler().ServeHTTP(w, r)
}

// joinCluster creates the ring client, joins the ring, and builds the
// distributor and the remote source on it.
func (ing *Ingester) joinCluster(ctx context.Context, httpPort int) (*cluster, error) {
	cfg := ing.Config
	r, err := ring.New(ring.Config{Ring: cfg.Ingester.Ring, Memberlist: cfg.Memberlist}, httpPort, cfg.DataDir, ing.Logger, ing.Registry)
	if err != nil {
		return nil, err
	}
	if err := r.Start(ctx); err != nil {
		return nil, err
	}
	self := r.InstanceID()
	c := &cluster{ring: r}
	c.distributor = distributor.New(distributor.Options{
		Ring: ringAdapter{r}, Self: self, Local: storeAppender{ing}, Logger: ing.Logger, Registerer: ing.Registry,
	})
	c.remote = remote.NewSource(remote.SourceOptions{Ring: ringAdapter{r}, Self: self, Logger: ing.Logger, Registerer: ing.Registry})
	return c, nil
}
