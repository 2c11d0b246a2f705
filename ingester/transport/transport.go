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
	"strings"

	"connectrpc.com/connect"

	"github.com/hearth-dev/hearth/ingester/push"
)

// CodeHeader carries the connect code of a refused internal request.
const CodeHeader = "X-Hearth-Code"

// DefaultClient is the pooled HTTP/1.1 client of the internal endpoints (the
// distributor's and the remote reader's when their options give none).
func DefaultClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	t.Proxy = nil
	return &http.Client{Transport: t}
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
