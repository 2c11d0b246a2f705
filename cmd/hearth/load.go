package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/hearth-dev/hearth/internal/load"
)

func init() {
	register("load", "push a directory of pprof files at an ingester and report throughput", runLoad)
}

func runLoad(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	var cfg load.Config
	fs.StringVar(&cfg.URL, "url", "http://localhost:4040", "base URL of the ingester")
	fs.StringVar(&cfg.Dir, "dir", "", "directory of pprof files to push (required)")
	fs.Float64Var(&cfg.Rate, "rate", 0, "pushes per second in total (0: as fast as the workers go)")
	fs.IntVar(&cfg.Workers, "workers", 4, "concurrent pushes")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to push (0: until interrupted)")
	fs.IntVar(&cfg.Series, "series", 10, "distinct values of the rotating instance label")
	fs.IntVar(&cfg.SeriesPerPush, "series-per-push", 1, "series in one push request: the profile under that many consecutive instance values (many series cheaply)")
	fs.StringVar(&cfg.Tenant, "tenant", "", "tenant (X-Scope-OrgID header); empty: not sent")
	fs.StringVar(&cfg.Protocol, "protocol", "connect", "wire protocol: connect, grpc or grpcweb")
	fs.BoolVar(&cfg.H2C, "h2c", false, "use HTTP/2 without TLS instead of HTTP/1.1")
	fs.Int64Var(&cfg.MaxPushes, "max-pushes", 0, "stop after this many pushes (0: no limit)")
	fs.StringVar(&cfg.Service, "service", "", "service_name of every push (empty: the file name)")
	check := fs.Bool("check", false, "after the run, query every acknowledged push (by profile id) and fail when one is missing")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if cfg.Dir == "" {
		return errors.New("-dir is required")
	}
	cfg.Out = os.Stdout
	acks := &load.AckLog{}
	if *check {
		cfg.Acked = acks.Record
	}
	s, err := load.Run(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Print(s.String())
	if !*check {
		return nil
	}
	r, err := load.Check(ctx, cfg, acks.Acks())
	if err != nil {
		return err
	}
	fmt.Print(r.String())
	if r.Missing > 0 || r.Found != float64(r.Acked) {
		return fmt.Errorf("check: %d of %d acknowledged pushes missing (%.2f found)", r.Missing, r.Acked, r.Found)
	}
	return nil
}
