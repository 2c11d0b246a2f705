package app

import (
	dskitring "github.com/grafana/dskit/ring"

	"github.com/hearth-dev/hearth/ingester/distributor"
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
