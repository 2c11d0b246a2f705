package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	querierv1 "github.com/grafana/pyroscope/api/gen/proto/go/querier/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/querier/v1/querierv1connect"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	hearthv1 "github.com/hearth-dev/hearth/api/v1alpha1"
	"github.com/hearth-dev/hearth/controllers"
	"github.com/hearth-dev/hearth/ingester/distributor"
	"github.com/hearth-dev/hearth/ingester/record"
	"github.com/hearth-dev/hearth/ingester/remote"
	"github.com/hearth-dev/hearth/ingester/tenant"
	"github.com/hearth-dev/hearth/internal/load"
	"github.com/hearth-dev/hearth/internal/testutil"
	"github.com/hearth-dev/hearth/internal/tlsreload"
)

// do sends one request and returns the status and body.
func do(t *testing.T, c *http.Client, method, u string, header http.Header, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

func orgID(id ...string) http.Header {
	h := http.Header{}
	for _, v := range id {
		h.Add(tenant.Header, v)
	}
	return h
}

// TestPublicPortTenantIsolation pushes as tenant A, then tries every path of the
// public port as others would: only A reads A's data, the internal paths (tenant in
// the body) and every admin endpoint answer 404 there, and the ingester is untouched.
func TestPublicPortTenantIsolation(t *testing.T) {
	internal := testutil.FreePort(t)
	p := testutil.StartIngester(t, testutil.FreePort(t), "-data-dir="+t.TempDir(), "-auth.multitenancy-enabled",
		"-server.internal-listen-address=127.0.0.1", "-server.internal-listen-port="+strconv.Itoa(internal))
	internalURL := "http://127.0.0.1:" + strconv.Itoa(internal)
	dir, perProfile := testutil.HeapCorpus(t)
	acks := &load.AckLog{}
	s, err := load.Run(context.Background(), load.Config{URL: p.URL, Dir: dir, Workers: 1, MaxPushes: 5, Tenant: "tenant-a", Acked: acks.Record})
	if err != nil || s.Errors > 0 || len(acks.Acks()) != 5 {
		t.Fatalf("push as tenant-a: %v, %d errors, %d acknowledged", err, s.Errors, len(acks.Acks()))
	}
	hc := http.DefaultClient

	// The query API: A sees its 5 profiles, B none, no header and bad ids are refused.
	q := querierv1connect.NewQuerierServiceClient(hc, p.URL)
	now := time.Now()
	total := func(h http.Header) (int64, error) {
		req := connect.NewRequest(&querierv1.SelectMergeStacktracesRequest{
			ProfileTypeID: testutil.AllocObjects, LabelSelector: `{service_name="heap"}`,
			Start: now.Add(-time.Hour).UnixMilli(), End: now.Add(time.Hour).UnixMilli(),
		})
		for k, vs := range h {
			for _, v := range vs {
				req.Header().Add(k, v)
			}
		}
		resp, err := q.SelectMergeStacktraces(context.Background(), req)
		if err != nil {
			return 0, err
		}
		return resp.Msg.Flamegraph.Total, nil
	}
	if got, err := total(orgID("tenant-a")); err != nil || got != 5*perProfile {
		t.Fatalf("tenant-a reads %d (%v), want %d", got, err, 5*perProfile)
	}
	if got, err := total(orgID("tenant-b")); err != nil || got != 0 {
		t.Fatalf("tenant-b reads %d of tenant-a's data (%v)", got, err)
	}
	for name, c := range map[string]struct {
		h    http.Header
		code connect.Code
	}{
		"no header":      {nil, connect.CodeUnauthenticated},
		"federated a|b":  {orgID("tenant-a|tenant-b"), connect.CodeInvalidArgument},
		"federated b|a":  {orgID("tenant-b|tenant-a"), connect.CodeInvalidArgument},
		"two headers":    {orgID("tenant-b", "tenant-a"), connect.CodeInvalidArgument},
		"path traversal": {orgID("../tenant-a"), connect.CodeInvalidArgument},
		"a space":        {orgID("tenant a"), connect.CodeInvalidArgument},
	} {
		if got, err := total(c.h); connect.CodeOf(err) != c.code || got != 0 {
			t.Errorf("query with %s: %d, %v; want %v", name, got, err, c.code)
		}
	}
	// Series and label values, as B: nothing of A's.
	lv, err := q.LabelValues(context.Background(), func() *connect.Request[typesv1.LabelValuesRequest] {
		r := connect.NewRequest(&typesv1.LabelValuesRequest{Name: "service_name", Start: now.Add(-time.Hour).UnixMilli(), End: now.Add(time.Hour).UnixMilli()})
		r.Header().Set(tenant.Header, "tenant-b")
		return r
	}())
	if err != nil {
		t.Fatal(err)
	}
	if len(lv.Msg.Names) != 0 {
		t.Fatalf("tenant-b sees service names %v", lv.Msg.Names)
	}

	// The internal paths, tenant in the body, on the public port: not served.
	sel, _ := json.Marshal(map[string]any{"tenant": "tenant-a", "start": 0, "end": now.Add(time.Hour).UnixNano()})
	record := record.Encode("tenant-a", nil)
	for _, path := range []string{"/internal/v1/select", "/internal/v1/series-labels"} {
		for _, h := range []http.Header{nil, orgID("tenant-b"), orgID("tenant-a")} {
			if code, body := do(t, hc, http.MethodPost, p.URL+path, h, sel); code != http.StatusNotFound {
				t.Errorf("POST %s on the public port with %v: %d %.200q, want 404", path, h, code, body)
			}
		}
	}
	if code, _ := do(t, hc, http.MethodPost, p.URL+distributor.AppendPath, orgID("tenant-a"), record); code != http.StatusNotFound {
		t.Errorf("POST %s on the public port: %d, want 404", distributor.AppendPath, code)
	}
	// Admin endpoints: none answers on the public port.
	admin := []struct{ method, path string }{
		{http.MethodPost, "/ingester/shutdown"}, {http.MethodPost, "/ingester/flush"}, {http.MethodPost, "/ingester/flush?wait=true"},
		{http.MethodPost, "/ingester/prepare-shutdown"}, {http.MethodGet, "/ingester/prepare-shutdown"}, {http.MethodDelete, "/ingester/prepare-shutdown"},
		{http.MethodPost, "/ingester/prepare-stop"}, {http.MethodGet, "/debug/pprof/"}, {http.MethodGet, "/debug/pprof/goroutine"},
	}
	for _, a := range admin {
		if code, body := do(t, hc, a.method, p.URL+a.path, orgID("tenant-a"), nil); code != http.StatusNotFound {
			t.Errorf("%s %s on the public port: %d %.200q, want 404", a.method, a.path, code, body)
		}
	}
	forget := []byte(url.Values{"forget": {"ingester-" + strconv.Itoa(p.Port)}}.Encode())
	fh := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	if code, _ := do(t, hc, http.MethodPost, p.URL+"/ring", fh, forget); code != http.StatusNotFound && code != http.StatusMethodNotAllowed {
		t.Errorf("POST /ring forget on the public port: %d, want 404 or 405", code)
	}
	// The read-only ring page, /ready and /metrics do answer there.
	for _, path := range []string{"/ring", "/ready", "/metrics"} {
		if code, _ := do(t, hc, http.MethodGet, p.URL+path, nil, nil); code != http.StatusOK {
			t.Errorf("GET %s on the public port: %d", path, code)
		}
	}
	// Nothing happened: still ready, ACTIVE, not marked, A's data intact.
	if err := p.WaitReady(5 * time.Second); err != nil || p.Exited() {
		t.Fatalf("the ingester after the admin calls on the public port: %v", err)
	}
	if st := ringOf(t, p.URL).states(); st["ingester-"+strconv.Itoa(p.Port)] != "ACTIVE" {
		t.Fatalf("ring after the admin calls on the public port: %v", st)
	}
	if code, body := do(t, hc, http.MethodGet, internalURL+"/ingester/prepare-shutdown", nil, nil); code != http.StatusOK || !strings.Contains(body, "unset") {
		t.Fatalf("prepare-shutdown marker after the public calls: %d %q", code, body)
	}
	if got, err := total(orgID("tenant-a")); err != nil || got != 5*perProfile {
		t.Fatalf("tenant-a reads %d (%v) after the attempts, want %d", got, err, 5*perProfile)
	}

	// The internal port is where these live (no TLS in this test): the select
	// answers tenant-a's series there, and refuses a federated tenant.
	code, body := do(t, hc, http.MethodPost, internalURL+"/internal/v1/series-labels", nil, sel)
	if code != http.StatusOK {
		t.Fatalf("series-labels on the internal port: %d %.200q", code, body)
	}
	ls, err := remote.DecodeLabels([]byte(body), 1<<20)
	if err != nil || len(ls) == 0 || ls[0].Get("service_name") != "heap" {
		t.Fatalf("series-labels on the internal port: %v %v", ls, err)
	}
	fed, _ := json.Marshal(map[string]any{"tenant": "tenant-a|tenant-b"})
	if code, body := do(t, hc, http.MethodPost, internalURL+"/internal/v1/select", nil, fed); code != http.StatusBadRequest || !strings.Contains(body, "federated") {
		t.Fatalf("federated tenant on the internal port: %d %.200q", code, body)
	}
}

func tlsArgs(f testutil.TLSFiles, serverName string) []string {
	return []string{
		"-server.internal-tls-cert-path=" + f.Cert, "-server.internal-tls-key-path=" + f.Key,
		"-server.internal-tls-client-ca-path=" + f.CA, "-server.internal-tls-client-auth=RequireAndVerifyClientCert",
		"-ingester.client.tls-enabled", "-ingester.client.tls-cert-path=" + f.Cert, "-ingester.client.tls-key-path=" + f.Key,
		"-ingester.client.tls-ca-path=" + f.CA, "-ingester.client.tls-server-name=" + serverName,
		"-memberlist.tls-enabled", "-memberlist.tls-cert-path=" + f.Cert, "-memberlist.tls-key-path=" + f.Key,
		"-memberlist.tls-ca-path=" + f.CA, "-memberlist.tls-server-name=" + serverName,
	}
}

// serverSerial makes one TLS handshake with addr as the client c and returns the
// serial of the certificate the server presents (an error when refused).
func serverSerial(c *tlsreload.Client, addr string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := c.DialTLSContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	// A TLS 1.3 server checks the client certificate after the client's handshake
	// returns: a request shows whether it was accepted.
	tc := conn.(*tls.Conn)
	if _, err := fmt.Fprintf(tc, "GET /ring HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\nConnection: close\r\n\r\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(io.LimitReader(tc, 64<<10))
	if err != nil {
		return "", err
	}
	if !bytes.HasPrefix(b, []byte("HTTP/1.1 200")) {
		return "", fmt.Errorf("answer %.80q", b)
	}
	return tc.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
}

// TestMutualTLSCluster runs three ingesters with mutual TLS on the internal port and
// memberlist: a peer without a valid client certificate is refused, pushes and queries
// work, and certificates renewed on disk under load are picked up with no failed push.
func TestMutualTLSCluster(t *testing.T) {
	const serverName = "hearth-headless.test.svc"
	ca := testutil.NewCA(t, "hearth-test-ca")
	root := t.TempDir()
	bucket := t.TempDir()
	const n = 3
	type nd struct {
		id                 string
		port, internal, ml int
		files              testutil.TLSFiles
		proc               *testutil.Process
	}
	nodes := make([]*nd, n)
	for i := range nodes {
		nodes[i] = &nd{id: fmt.Sprintf("ingester-%d", i), port: testutil.FreePort(t), internal: testutil.FreePort(t), ml: testutil.FreePort(t)}
		nodes[i].files = testutil.WriteTLSDir(t, filepath.Join(root, nodes[i].id), ca.Issue(t, nodes[i].id, []string{serverName}), ca.PEM)
	}
	var wg sync.WaitGroup
	for i, x := range nodes {
		args := append([]string{"-data-dir=" + t.TempDir(), "-log.level=info", "-ingester.ring.instance-id=" + x.id,
			"-memberlist.bind-port=" + strconv.Itoa(x.ml), "-server.internal-listen-address=127.0.0.1",
			"-server.internal-listen-port=" + strconv.Itoa(x.internal), "-storage.filesystem.dir=" + bucket,
			"-ingester.ring.heartbeat-period=500ms", "-ingester.ring.heartbeat-timeout=5s"}, tlsArgs(x.files, serverName)...)
		for j, y := range nodes {
			if j != i {
				args = append(args, "-memberlist.join=127.0.0.1:"+strconv.Itoa(y.ml))
			}
		}
		wg.Add(1)
		go func() { defer wg.Done(); x.proc = testutil.StartIngester(t, x.port, args...) }()
	}
	wg.Wait()
	for i := 0; ; i++ { // the ring over TLS gossip: every node sees three ACTIVE
		ok := true
		for _, x := range nodes {
			st := ringOf(t, x.proc.URL).states()
			if len(st) != n || slices.ContainsFunc(slices.Collect(maps.Values(st)), func(s string) bool { return s != "ACTIVE" }) {
				ok = false
			}
		}
		if ok {
			break
		}
		if i > 300 {
			t.Fatalf("the ring did not reach 3 ACTIVE over TLS gossip: %v", ringOf(t, nodes[0].proc.URL).states())
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The ring advertises the internal addresses.
	var page struct {
		Shards []struct{ ID, Address string } `json:"shards"`
	}
	_, body := do(t, http.DefaultClient, http.MethodGet, nodes[0].proc.URL+"/ring", http.Header{"Accept": {"application/json"}}, nil)
	if err := json.Unmarshal([]byte(body), &page); err != nil {
		t.Fatal(err)
	}
	for _, s := range page.Shards {
		i := slices.IndexFunc(nodes, func(x *nd) bool { return x.id == s.ID })
		if i < 0 || s.Address != "127.0.0.1:"+strconv.Itoa(nodes[i].internal) {
			t.Fatalf("ring member %s advertises %s, want its internal port", s.ID, s.Address)
		}
	}

	addr0 := "127.0.0.1:" + strconv.Itoa(nodes[0].internal)
	client := func(cert, key, caPath string) *tlsreload.Client {
		cc := tlsreload.ClientConfig{Enabled: true}
		cc.CertPath, cc.KeyPath, cc.CAPath, cc.ServerName = cert, key, caPath, serverName
		c, err := cc.NewClient(nil)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	f0 := nodes[0].files
	if _, err := serverSerial(client(f0.Cert, f0.Key, f0.CA), addr0); err != nil {
		t.Fatalf("a peer's certificate is refused: %v", err)
	}
	// Refused: no client certificate, one of another CA, plain HTTP.
	if _, err := serverSerial(client("", "", f0.CA), addr0); err == nil {
		t.Fatal("a client without a certificate was served on the internal port")
	}
	other := testutil.NewCA(t, "intruder-ca")
	of := testutil.WriteTLSDir(t, filepath.Join(root, "intruder"), other.Issue(t, "intruder", []string{serverName}), ca.PEM)
	if _, err := serverSerial(client(of.Cert, of.Key, f0.CA), addr0); err == nil {
		t.Fatal("a client certificate of another CA was served on the internal port")
	}
	if resp, err := http.Post("http://"+addr0+"/internal/v1/select", "application/json", strings.NewReader(`{"tenant":"anonymous"}`)); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP was served on the TLS internal port")
		}
	}

	// Pushes and queries work over mutual TLS, and renewed certificates are picked
	// up under load without a failed push.
	dir, perProfile := testutil.HeapCorpus(t)
	acks := &load.AckLog{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		s   load.Summary
		err error
	}
	done := make(chan result, n)
	for _, x := range nodes {
		go func() {
			s, err := load.Run(ctx, load.Config{URL: x.proc.URL, Dir: dir, Workers: 2, Rate: 40, Series: 20, Acked: acks.Record})
			done <- result{s, err}
		}()
	}
	waitAcks := func(min int) {
		for i := 0; len(acks.Acks()) < min; i++ {
			if i > 600 {
				t.Fatalf("only %d pushes acknowledged, waiting for %d", len(acks.Acks()), min)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitAcks(60)
	before := map[string]string{}
	for _, x := range nodes {
		s, err := serverSerial(client(f0.Cert, f0.Key, f0.CA), "127.0.0.1:"+strconv.Itoa(x.internal))
		if err != nil {
			t.Fatal(err)
		}
		before[x.id] = s
	}
	// Renew every node's certificate (same CA, as cert-manager does) while the load runs.
	renewed := map[string]string{}
	for _, x := range nodes {
		leaf := ca.Issue(t, x.id, []string{serverName})
		testutil.WriteTLSDir(t, x.files.Dir, leaf, ca.PEM)
		renewed[x.id] = leaf.Serial.String()
	}
	mark := len(acks.Acks())
	waitAcks(mark + 60)
	for _, x := range nodes {
		got, err := serverSerial(client(x.files.Cert, x.files.Key, x.files.CA), "127.0.0.1:"+strconv.Itoa(x.internal))
		if err != nil {
			t.Fatalf("%s after renewal: %v", x.id, err)
		}
		if got != renewed[x.id] || got == before[x.id] {
			t.Fatalf("%s serves certificate %s after renewal, want the renewed %s (was %s)", x.id, got, renewed[x.id], before[x.id])
		}
	}
	cancel()
	var pushes, errs int64
	for range nodes {
		r := <-done
		if r.err != nil {
			t.Fatal(r.err)
		}
		pushes += r.s.Pushes
		errs += r.s.Errors
		for code, msg := range r.s.FirstErrors {
			t.Logf("first %s error: %s", code, msg)
		}
	}
	t.Logf("load over mutual TLS: %d pushes, %d failed, %d acknowledged; certificates renewed after %d", pushes, errs, len(acks.Acks()), mark)
	if errs > 0 {
		t.Fatalf("%d pushes failed over mutual TLS (across a certificate renewal)", errs)
	}
	// Every acknowledged profile is found, once, through every node (reads fan out
	// over mutual TLS).
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
	// The processes logged the reload (no restart happened).
	for _, x := range nodes {
		if !strings.Contains(x.proc.Log(), "TLS certificate reloaded") || x.proc.Exited() {
			t.Errorf("%s: no reload logged, or it exited", x.id)
		}
	}
}

// TestOperatorPublicTLSConfig runs `hearth ingester` with the configuration the operator
// renders for spec.tls with public: true (the Secret's mount moved to a temporary
// directory, the cluster-only join address removed): the public port serves TLS with
// the Secret's certificate and takes a push and a query over it, refuses plain HTTP,
// asks no client certificate; the internal port still requires one.
func TestOperatorPublicTLSConfig(t *testing.T) {
	ing := &hearthv1.Ingester{
		ObjectMeta: metav1.ObjectMeta{Name: "hearth", Namespace: "profiling"},
		Spec: hearthv1.IngesterSpec{
			Replicas: ptr.To[int32](1), ReplicationFactor: 1,
			ObjectStorage: hearthv1.ObjectStorageSpec{Backend: hearthv1.BackendFilesystem},
			TLS:           &hearthv1.TLSSpec{SecretName: "hearth-tls", Public: true},
		},
	}
	rendered, err := controllers.IngesterConfig(ing, "")
	if err != nil {
		t.Fatal(err)
	}
	serverName := controllers.TLSServerName(ing)
	ca := testutil.NewCA(t, "hearth-test-ca")
	files := testutil.WriteTLSDir(t, t.TempDir(), ca.Issue(t, "hearth", []string{serverName}), ca.PEM)
	var cfg map[string]any
	if err := yaml.Unmarshal(bytes.ReplaceAll(rendered, []byte(controllers.TLSDir), []byte(files.Dir)), &cfg); err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	cfg["memberlist"].(map[string]any)["join_members"] = []any{}
	cfg["ingester"].(map[string]any)["ring"].(map[string]any)["tokens_file_path"] = filepath.Join(dataDir, "tokens")
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "hearth.yaml")
	if err := os.WriteFile(file, out, 0o600); err != nil {
		t.Fatal(err)
	}
	p := testutil.StartIngester(t, testutil.FreePort(t), "-config.file="+file, "-data-dir="+dataDir,
		"-storage.filesystem.dir="+t.TempDir(), "-shutdown-delay=0s")
	if !strings.HasPrefix(p.URL, "https://") {
		t.Fatalf("public URL %s: the rendered config did not turn on TLS", p.URL)
	}

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.PEM)
	verified := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: serverName}}}
	// A push and a query over TLS, verified with the Secret's CA, without a client certificate.
	dir, _ := testutil.HeapCorpus(t)
	s, err := load.Run(context.Background(), load.Config{URL: p.URL, Dir: dir, Workers: 1, MaxPushes: 5, HTTPClient: verified})
	if err != nil || s.Pushes == 0 || s.Errors > 0 {
		t.Fatalf("pushes over public TLS: %+v %v", s, err)
	}
	qc := querierv1connect.NewQuerierServiceClient(verified, p.URL)
	names, err := qc.LabelValues(context.Background(), connect.NewRequest(&typesv1.LabelValuesRequest{Name: "service_name"}))
	if err != nil || len(names.Msg.Names) == 0 {
		t.Fatalf("query over public TLS: %v %v", names, err)
	}
	// Plain HTTP on the public port is refused.
	if code, _ := do(t, http.DefaultClient, http.MethodGet, "http://"+strings.TrimPrefix(p.URL, "https://")+"/ready", nil, nil); code != http.StatusBadRequest {
		t.Fatalf("plain HTTP to the public port: %d, want 400 (an HTTP request to an HTTPS server)", code)
	}
	// The internal port still requires a client certificate.
	if _, err := verified.Get(strings.Replace(p.InternalURL, "http://", "https://", 1) + "/ring"); err == nil {
		t.Fatal("the internal port answered a client without a certificate")
	}
}
