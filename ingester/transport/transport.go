// Package transport holds what the ingesters' internal HTTP endpoints share:
// the HTTP client, and how a refusal travels (its connect code in a header,
// its message as the body) between the distributor and its replicas and
// between the remote reader and the ingesters it reads.
package transport

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"connectrpc.com/connect"

	"github.com/hearth-dev/hearth/ingester/push"
	"github.com/hearth-dev/hearth/internal/formatver"
)

// CodeHeader carries the connect code of a refused internal request.
const CodeHeader = "X-Hearth-Code"

// ProtocolHeader carries the internal protocol's version (the bodies of
// /internal/v1/append, select and series-labels, and their answers) on every
// request and answer between ingesters. The first release sent none: no
// header is version 1. During a rollout old and new members talk both ways,
// so a receiver reads the current and the previous version and refuses any
// other (formatver.ReplicaProtocol) rather than misreading a body.
const ProtocolHeader = "X-Hearth-Protocol"

// protocolVersion is the version of the message with header h.
func protocolVersion(h http.Header) (int, error) {
	s := h.Get(ProtocolHeader)
	if s == "" {
		return 1, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%s %q is not a version number", ProtocolHeader, s)
	}
	return v, nil
}

// checkProtocol refuses a message (from peer) of a version this release does not read.
func checkProtocol(h http.Header, peer string) error {
	v, err := protocolVersion(h)
	if err != nil {
		return fmt.Errorf("%s: %w", peer, err)
	}
	return formatver.ReplicaProtocol.Check(peer, v)
}

// Versioned serves next with the protocol version on every answer, after
// refusing a request of a version this release does not read (Unimplemented:
// the distributor counts it as that replica failing, not as bad data).
func Versioned(next http.Handler) http.Handler {
	version := strconv.Itoa(formatver.ReplicaProtocol.Writes)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(ProtocolHeader, version)
		if err := checkProtocol(r.Header, "request from "+r.RemoteAddr+" to "+r.URL.Path); err != nil {
			WriteError(w, connect.NewError(connect.CodeUnimplemented, err))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// VersionedTransport sends the protocol version with every request of next
// and refuses an answer of a version this release does not read.
func VersionedTransport(next http.RoundTripper) http.RoundTripper {
	return versioned{next: next, version: strconv.Itoa(formatver.ReplicaProtocol.Writes)}
}

type versioned struct {
	next    http.RoundTripper
	version string
}

func (t versioned) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context()) // a RoundTripper must not change the caller's request
	req.Header.Set(ProtocolHeader, t.version)
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if err := checkProtocol(resp.Header, "answer of "+req.URL.Host+req.URL.Path); err != nil {
		_ = resp.Body.Close()
		return nil, err
	}
	return resp, nil
}

// DefaultTransport is the pooled HTTP/1.1 transport of the internal endpoints.
func DefaultTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	t.Proxy = nil
	return t
}

// DefaultClient is the internal endpoints' client (the distributor's and the
// remote reader's when their options give none): DefaultTransport, sending
// and checking the protocol version.
func DefaultClient() *http.Client {
	return &http.Client{Transport: VersionedTransport(DefaultTransport())}
}

// WriteError answers with the code in CodeHeader, its HTTP status, and the
// message as the body.
func WriteError(w http.ResponseWriter, err *connect.Error) {
	w.Header().Set(CodeHeader, err.Code().String())
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(push.HTTPStatus(err.Code()))
	_, _ = io.WriteString(w, err.Message())
}

// ReadError turns a non-2xx internal response into a connect error with the
// code the peer sent (Unavailable when it sent none: a proxy, a crash).
func ReadError(resp *http.Response) *connect.Error {
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	text := strings.TrimSpace(string(msg))
	if text == "" {
		text = resp.Status
	}
	var code connect.Code
	if err := code.UnmarshalText([]byte(resp.Header.Get(CodeHeader))); err != nil || code == 0 {
		return connect.NewError(connect.CodeUnavailable, fmt.Errorf("%s: %s", resp.Status, text))
	}
	return connect.NewError(code, errors.New(text))
}

// AsConnect is err as a connect error of code, without repeating the code
// in the message when err already is one.
func AsConnect(code connect.Code, err error) *connect.Error {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return connect.NewError(code, errors.New(ce.Message()))
	}
	return connect.NewError(code, err)
}

// BaseURL is scheme://addr, scheme "" meaning http ("https" when the client
// dials TLS: -ingester.client.tls-enabled).
func BaseURL(scheme, addr string) string {
	if scheme == "" {
		scheme = "http"
	}
	return scheme + "://" + addr
}
