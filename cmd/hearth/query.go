package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"time"

	"connectrpc.com/connect"
	querierv1 "github.com/grafana/pyroscope/api/gen/proto/go/querier/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/querier/v1/querierv1connect"

	"github.com/hearth-dev/hearth/ingester/model"
	"github.com/hearth-dev/hearth/ingester/querier"
	"github.com/hearth-dev/hearth/ingester/tenant"
)

func init() {
	register("query", "query an ingester: profile types, or a top-N table of a merged profile", runQuery)
}

func runQuery(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("hearth query", flag.ContinueOnError)
	url := fs.String("url", "http://127.0.0.1:4040", "ingester or Service URL")
	typ := fs.String("type", "process_cpu:cpu:nanoseconds:cpu:nanoseconds", "profile type id (see -types)")
	sel := fs.String("selector", "{}", "label selector, e.g. {service_name=\"app\"}")
	since := fs.Duration("since", time.Hour, "query the last duration")
	n := fs.Int("n", 10, "rows in the top table")
	types := fs.Bool("types", false, "list the profile types instead")
	org := fs.String("tenant", "", "X-Scope-OrgID to send")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: hearth query [flags]\n\nPrints a top-N table of the merged profile (or the profile types).\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	client := querierv1connect.NewQuerierServiceClient(http.DefaultClient, *url)
	end := time.Now()
	start := end.Add(-*since)
	withTenant := func(r interface{ Header() http.Header }) {
		if *org != "" {
			r.Header().Set(tenant.Header, *org)
		}
	}
	if *types {
		req := connect.NewRequest(&querierv1.ProfileTypesRequest{Start: start.UnixMilli(), End: end.UnixMilli()})
		withTenant(req)
		resp, err := client.ProfileTypes(ctx, req)
		if err != nil {
			return err
		}
		for _, t := range resp.Msg.ProfileTypes {
			fmt.Println(t.ID)
		}
		return nil
	}
	pt, err := model.ParseProfileType(*typ)
	if err != nil {
		return err
	}
	req := connect.NewRequest(&querierv1.SelectMergeProfileRequest{ProfileTypeID: *typ, LabelSelector: *sel, Start: start.UnixMilli(), End: end.UnixMilli()})
	withTenant(req)
	//lint:ignore SA1019 querier.v1 keeps it; the whole pprof is what this command prints
	resp, err := client.SelectMergeProfile(ctx, req)
	if err != nil {
		return err
	}
	rows, total := querier.Top(resp.Msg, *n)
	fmt.Printf("%s %s, last %s: total %s\n", *typ, *sel, *since, querier.FormatValue(total, pt.SampleUnit))
	return querier.WriteTop(os.Stdout, rows, total, pt.SampleUnit)
}
