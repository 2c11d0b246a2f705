package compactor

import (
	"github.com/hearth-dev/hearth/ingester/block"
	"github.com/hearth-dev/hearth/ingester/querier"
)

func newQuerier(src *block.BucketSource) *querier.Service {
	return &querier.Service{Sources: []querier.Source{src}}
}
