package otlp

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"connectrpc.com/connect"
	collectorv1 "go.opentelemetry.io/proto/otlp/collector/profiles/v1development"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/hearth-dev/hearth/ingester/ingest"
	"github.com/hearth-dev/hearth/ingester/push"
	"github.com/hearth-dev/hearth/ingester/tenant"
	"github.com/hearth-dev/hearth/ingester/usage"
	"github.com/hearth-dev/hearth/ingester/validation"
)

// ExportProcedure is the gRPC method OTLP exporters call (the OpenTelemetry
// Collector, the eBPF profiler).
const ExportProcedure = "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export"

// HTTPPath is the OTLP/HTTP endpoint (protobuf or JSON bodies).
const HTTPPath = "/v1development/profiles"

// DefaultMaxRequestBytes bounds an OTLP/HTTP body, as received and after
// gunzip: a request carries many profiles, so it is not the per-profile limit.
const DefaultMaxRequestBytes = 64 << 20

// Content types of OTLP/HTTP bodies.
const (
	contentProtobuf = "application/x-protobuf"
	contentJSON     = "application/json"
)

// Server serves OTLP profiles into the push front door.
type Server struct {
	Push            *push.Handler
	MaxRequestBytes int // OTLP/HTTP bodies; 0: DefaultMaxRequestBytes
}

// Handler serves both OTLP paths (ExportProcedure and HTTPPath) as
// Pyroscope does, by content type: ProfilesService/Export over gRPC (and
// gRPC-Web, Connect with protobuf), built with the server's connect options,
// and OTLP/HTTP (ServeHTTP) for anything else.
func (s *Server) Handler(opts ...connect.HandlerOption) http.Handler {
	rpc := connect.NewUnaryHandler(ExportProcedure, s.export, opts...)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isRPC(r.Header.Get("Content-Type")) {
			rpc.ServeHTTP(w, r)
			return
		}
		s.ServeHTTP(w, r)
	})
}

// isRPC tells the content types of gRPC, gRPC-Web and Connect's protobuf
// codec; OTLP/HTTP's protobuf and JSON are not among them.
func isRPC(contentType string) bool {
	mt, _, _ := mime.ParseMediaType(contentType)
	return strings.HasPrefix(mt, "application/grpc") || strings.HasPrefix(mt, "application/connect+") || mt == "application/proto"
}

func (s *Server) export(ctx context.Context, req *connect.Request[collectorv1.ExportProfilesServiceRequest]) (*connect.Response[collectorv1.ExportProfilesServiceResponse], error) {
	if err := s.push(ctx, req.Header(), proto.Size(req.Msg), req.Msg); err != nil {
		return nil, err
	}
	return connect.NewResponse(&collectorv1.ExportProfilesServiceResponse{}), nil
}

// UsageType is the type label of OTLP requests' bytes in the usage metrics
// (Pyroscope's).
const UsageType = "otel"

// push converts a request and hands its profiles to the front door.
func (s *Server) push(ctx context.Context, hdr http.Header, size int, req *collectorv1.ExportProfilesServiceRequest) error {
	return s.Push.PushConverted(ctx, hdr, UsageType, size, func() ([]ingest.Decoded, error) {
		ds, err := Convert(req, s.Push.Now())
		if err != nil {
			return nil, fmt.Errorf("failed to convert otel profile: %w", err)
		}
		return ds, nil
	})
}

// ServeHTTP serves POST /v1development/profiles: an ExportProfilesServiceRequest
// as protobuf (application/x-protobuf or application/protobuf) or JSON
// (application/json), maybe gzipped (Content-Encoding: gzip). The answer is
// an empty ExportProfilesServiceResponse in the request's encoding; errors
// are plain text with the status push.v1 would give (400 for a body that
// does not decode or convert).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	// The tenant before the body, as every push path answers a missing one.
	if _, err := tenant.FromHeader(r.Header, s.Push.Multitenancy); err != nil {
		http.Error(w, err.Error(), push.HTTPStatus(push.TenantError(err).Code()))
		return
	}
	counted := usage.CountBody(r.Body)
	r.Body = counted
	refuse := func(msg string, status int, reason validation.Reason) {
		n := counted.N()
		if n == 0 && r.ContentLength > 0 { // refused before the body was read
			n = int(r.ContentLength)
		}
		s.Push.Refused(r.Header, UsageType, n, reason)
		http.Error(w, msg, status)
	}
	isJSON, ok := bodyEncoding(r.Header.Get("Content-Type"))
	if !ok {
		refuse(fmt.Sprintf("unsupported Content-Type %q: send %s or %s", r.Header.Get("Content-Type"), contentProtobuf, contentJSON), http.StatusUnsupportedMediaType, validation.UnsupportedFormat)
		return
	}
	body, status, err := s.readBody(w, r)
	if err != nil {
		reason := validation.InvalidProfile
		switch status {
		case http.StatusRequestEntityTooLarge:
			reason = validation.BodyTooLarge
		case http.StatusUnsupportedMediaType:
			reason = validation.UnsupportedFormat
		}
		refuse(err.Error(), status, reason)
		return
	}
	decode := DecodeProto
	if isJSON {
		decode = DecodeJSON
	}
	req, err := decode(body)
	if err != nil {
		refuse(err.Error(), http.StatusBadRequest, validation.InvalidProfile)
		return
	}
	if err := s.push(r.Context(), r.Header, counted.N(), req); err != nil {
		code := connect.CodeInternal
		var ce *connect.Error
		if errors.As(err, &ce) {
			code = ce.Code()
		}
		http.Error(w, err.Error(), push.HTTPStatus(code))
		return
	}
	var out []byte
	if isJSON {
		w.Header().Set("Content-Type", contentJSON)
		out, err = protojson.Marshal(&collectorv1.ExportProfilesServiceResponse{})
	} else {
		w.Header().Set("Content-Type", contentProtobuf)
		out, err = proto.Marshal(&collectorv1.ExportProfilesServiceResponse{})
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
}

// bodyEncoding tells a Content-Type's encoding: JSON, or protobuf; ok is
// false for any other.
func bodyEncoding(contentType string) (isJSON, ok bool) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false, false
	}
	switch mt {
	case contentJSON:
		return true, true
	case contentProtobuf, "application/protobuf":
		return false, true
	}
	return false, false
}

// readBody reads the body, gunzipped when its Content-Encoding says gzip,
// bounded before and after: 413 when larger, 400 when unreadable.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, int, error) {
	limit := s.MaxRequestBytes
	if limit <= 0 {
		limit = DefaultMaxRequestBytes
	}
	tooLarge := fmt.Errorf("the request body is larger than %d bytes", limit)
	var in io.Reader = http.MaxBytesReader(w, r.Body, int64(limit))
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(in)
		if err != nil {
			if mbe := new(http.MaxBytesError); errors.As(err, &mbe) {
				return nil, http.StatusRequestEntityTooLarge, tooLarge
			}
			return nil, http.StatusBadRequest, fmt.Errorf("cannot gunzip the request body: %w", err)
		}
		defer zr.Close()
		in = io.LimitReader(zr, int64(limit)+1)
	default:
		return nil, http.StatusUnsupportedMediaType, fmt.Errorf("unsupported Content-Encoding %q: send gzip or none", enc)
	}
	body, err := io.ReadAll(in)
	if mbe := new(http.MaxBytesError); errors.As(err, &mbe) || len(body) > limit {
		return nil, http.StatusRequestEntityTooLarge, tooLarge
	}
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("cannot read the request body: %w", err)
	}
	return body, http.StatusOK, nil
}

// DecodeProto decodes a protobuf ExportProfilesServiceRequest.
func DecodeProto(body []byte) (*collectorv1.ExportProfilesServiceRequest, error) {
	req := &collectorv1.ExportProfilesServiceRequest{}
	if err := proto.Unmarshal(body, req); err != nil {
		return nil, fmt.Errorf("failed to parse protobuf request: %w", err)
	}
	return req, nil
}

// DecodeJSON decodes an ExportProfilesServiceRequest in the protobuf JSON
// mapping (as Pyroscope: unknown fields refused, bytes in base64).
func DecodeJSON(body []byte) (*collectorv1.ExportProfilesServiceRequest, error) {
	req := &collectorv1.ExportProfilesServiceRequest{}
	if err := protojson.Unmarshal(body, req); err != nil {
		return nil, fmt.Errorf("failed to parse JSON request: %w", err)
	}
	return req, nil
}
