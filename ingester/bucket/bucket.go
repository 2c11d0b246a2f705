// Package bucket builds the object storage bucket (github.com/thanos-io/objstore) that
// finished blocks are uploaded to, from the storage configuration: filesystem (the
// embedded default), s3, gcs or azure. Credentials never come from the configuration
// file: they are read from each provider's standard environment variables.
//
// Every bucket returned by New is instrumented with objstore's Prometheus metrics
// (hearth_objstore_bucket_*) and bounds every operation with a timeout.
package bucket

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/providers/azure"
	"github.com/thanos-io/objstore/providers/gcs"
	"github.com/thanos-io/objstore/providers/s3"
)

// Backends names the supported values of Config.Backend.
var Backends = []string{"filesystem", "s3", "gcs", "azure"}

// DefaultOperationTimeout bounds one bucket operation unless configured otherwise.
const DefaultOperationTimeout = 5 * time.Minute

// Config selects and configures the bucket. Its YAML keys match the ingester's
// `storage` section; the gcs, azure and timeout settings are additions.
type Config struct {
	Backend    string           `yaml:"backend"`
	Filesystem FilesystemConfig `yaml:"filesystem"`
	S3         S3Config         `yaml:"s3"`
	GCS        GCSConfig        `yaml:"gcs"`
	Azure      AzureConfig      `yaml:"azure"`
	// OperationTimeout bounds each bucket call (an upload of one object, a delete, a
	// listing; for Get and GetRange the time until the object starts to arrive).
	// Zero means DefaultOperationTimeout; negative disables the timeout.
	OperationTimeout time.Duration `yaml:"operation_timeout"`
}

// FilesystemConfig is a bucket in a local directory.
type FilesystemConfig struct {
	Dir string `yaml:"dir"`
}

// S3Config is an S3-compatible bucket. Credentials: AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) from the environment; without them
// the AWS shared credentials file and then the instance/pod IAM role are tried.
type S3Config struct {
	BucketName string `yaml:"bucket_name"`
	Endpoint   string `yaml:"endpoint"`
	Region     string `yaml:"region"`
	Insecure   bool   `yaml:"insecure"`
	// ForcePathStyle addresses the bucket as endpoint/bucket rather than
	// bucket.endpoint (needed by most self-hosted S3 servers behind a plain host:port).
	ForcePathStyle bool `yaml:"force_path_style"`
}

// GCSConfig is a Google Cloud Storage bucket. Credentials: Google's application
// default credentials (GOOGLE_APPLICATION_CREDENTIALS naming a service account key
// file, or workload identity / the metadata server).
type GCSConfig struct {
	BucketName string `yaml:"bucket_name"`
}

// AzureConfig is an Azure Blob Storage container. Credentials, from the environment:
// AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_KEY (shared key of the account),
// or else the Azure SDK's default credential chain (AZURE_CLIENT_ID, AZURE_TENANT_ID,
// AZURE_CLIENT_SECRET, workload identity, managed identity). The container must exist.
type AzureConfig struct {
	// AccountName is the storage account (default: AZURE_STORAGE_ACCOUNT).
	AccountName   string `yaml:"account_name"`
	ContainerName string `yaml:"container_name"`
	// Endpoint is the blob service domain (default blob.core.windows.net).
	Endpoint string `yaml:"endpoint"`
}

// RegisterFlags registers the storage flags (-storage.*) with their defaults.
func (c *Config) RegisterFlags(f *flag.FlagSet) {
	f.StringVar(&c.Backend, "storage.backend", "filesystem", "Object storage: filesystem, s3, gcs, azure.")
	f.StringVar(&c.Filesystem.Dir, "storage.filesystem.dir", "", "Filesystem bucket directory (default <data-dir>/bucket).")
	f.StringVar(&c.S3.BucketName, "storage.s3.bucket-name", "", "S3 bucket.")
	f.StringVar(&c.S3.Endpoint, "storage.s3.endpoint", "", "S3 endpoint host:port.")
	f.StringVar(&c.S3.Region, "storage.s3.region", "", "S3 region.")
	f.BoolVar(&c.S3.Insecure, "storage.s3.insecure", false, "Use plain HTTP for S3.")
	f.BoolVar(&c.S3.ForcePathStyle, "storage.s3.force-path-style", false, "Address S3 buckets as endpoint/bucket (path style) instead of bucket.endpoint.")
	f.StringVar(&c.GCS.BucketName, "storage.gcs.bucket-name", "", "GCS bucket (credentials: GOOGLE_APPLICATION_CREDENTIALS or workload identity).")
	f.StringVar(&c.Azure.AccountName, "storage.azure.account-name", "", "Azure storage account (default: env AZURE_STORAGE_ACCOUNT).")
	f.StringVar(&c.Azure.ContainerName, "storage.azure.container-name", "", "Azure blob container (must exist).")
	f.StringVar(&c.Azure.Endpoint, "storage.azure.endpoint", "", "Azure blob service domain (default blob.core.windows.net).")
	f.DurationVar(&c.OperationTimeout, "storage.operation-timeout", DefaultOperationTimeout, "Timeout of one object storage operation (one object's upload, a delete, a listing).")
}

// Validate checks the configuration without contacting the bucket.
func (c *Config) Validate() error {
	switch c.Backend {
	case "filesystem":
		if c.Filesystem.Dir == "" {
			return errors.New("storage.filesystem.dir must be set for the filesystem backend")
		}
	case "s3":
		if c.S3.BucketName == "" {
			return errors.New("storage.s3.bucket-name must be set for the s3 backend")
		}
		if c.S3.Endpoint == "" {
			return errors.New("storage.s3.endpoint must be set for the s3 backend")
		}
	case "gcs":
		if c.GCS.BucketName == "" {
			return errors.New("storage.gcs.bucket-name must be set for the gcs backend")
		}
	case "azure":
		if c.Azure.ContainerName == "" {
			return errors.New("storage.azure.container-name must be set for the azure backend")
		}
		if c.Azure.AccountName == "" && os.Getenv("AZURE_STORAGE_ACCOUNT") == "" && os.Getenv("AZURE_STORAGE_CONNECTION_STRING") == "" {
			return errors.New("storage.azure.account-name (or env AZURE_STORAGE_ACCOUNT) must be set for the azure backend")
		}
	default:
		return fmt.Errorf("storage.backend %q: use one of %s", c.Backend, strings.Join(Backends, ", "))
	}
	return nil
}

// New builds the bucket named by cfg.Backend, wrapped with a per-operation timeout and
// with metrics registered on reg (nil: no metrics are registered). It does not contact
// the bucket: an unreachable bucket shows up as failing operations, not as an error here.
// The caller closes the bucket.
func New(ctx context.Context, cfg Config, logger *slog.Logger, reg prometheus.Registerer) (objstore.Bucket, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	raw, err := newRaw(ctx, cfg, logger)
	if err != nil {
		return nil, fmt.Errorf("storage backend %s: %w", cfg.Backend, err)
	}
	timeout := cfg.OperationTimeout
	if timeout == 0 {
		timeout = DefaultOperationTimeout
	}
	var b objstore.Bucket = raw
	if timeout > 0 {
		b = WithTimeout(b, timeout)
	}
	// Metrics outside the timeout, so timed-out operations count as failures.
	if reg != nil {
		reg = prometheus.WrapRegistererWithPrefix("hearth_", reg)
	}
	return objstore.WrapWithMetrics(b, reg, cfg.Backend), nil
}

func newRaw(ctx context.Context, cfg Config, logger *slog.Logger) (objstore.Bucket, error) {
	kl := goKitLogger{l: logger.With("component", "bucket", "backend", cfg.Backend)}
	switch cfg.Backend {
	case "filesystem":
		return newFilesystem(cfg.Filesystem.Dir)
	case "s3":
		c := s3.DefaultConfig
		c.PutUserMetadata = map[string]string{}
		c.Bucket = cfg.S3.BucketName
		c.Endpoint = cfg.S3.Endpoint
		c.Region = cfg.S3.Region
		c.Insecure = cfg.S3.Insecure
		if cfg.S3.ForcePathStyle {
			c.BucketLookupType = s3.PathLookup
		}
		// Credentials only from the environment; without them objstore's chain
		// (environment, shared credentials file, IAM role) applies.
		c.AccessKey = os.Getenv("AWS_ACCESS_KEY_ID")
		c.SecretKey = os.Getenv("AWS_SECRET_ACCESS_KEY")
		c.SessionToken = os.Getenv("AWS_SESSION_TOKEN")
		if (c.AccessKey == "") != (c.SecretKey == "") {
			return nil, errors.New("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together")
		}
		return s3.NewBucketWithConfig(kl, c, "hearth", nil)
	case "gcs":
		c := gcs.DefaultConfig
		c.Bucket = cfg.GCS.BucketName
		return gcs.NewBucketWithConfig(ctx, kl, c, "hearth", nil)
	case "azure":
		c := azure.DefaultConfig
		c.ContainerName = cfg.Azure.ContainerName
		c.StorageAccountName = cfg.Azure.AccountName
		if c.StorageAccountName == "" {
			c.StorageAccountName = os.Getenv("AZURE_STORAGE_ACCOUNT")
		}
		if cfg.Azure.Endpoint != "" {
			c.Endpoint = cfg.Azure.Endpoint
		}
		c.StorageAccountKey = os.Getenv("AZURE_STORAGE_KEY")
		c.StorageConnectionString = os.Getenv("AZURE_STORAGE_CONNECTION_STRING")
		if c.StorageConnectionString != "" {
			c.StorageAccountKey = ""
			if c.StorageAccountName == "" {
				c.StorageAccountName = "from-connection-string" // validated but unused with a connection string
			}
		}
		// Creating the container would contact Azure at startup; the shipper retries instead.
		c.StorageCreateContainer = false
		return azure.NewBucketWithConfig(kl, c, "hearth", nil)
	}
	return nil, fmt.Errorf("unknown backend %q", cfg.Backend)
}

// goKitLogger adapts slog to the go-kit logger objstore's providers take.
type goKitLogger struct{ l *slog.Logger }

func (g goKitLogger) Log(keyvals ...any) error {
	lvl := slog.LevelInfo
	msg := ""
	attrs := make([]any, 0, len(keyvals))
	for i := 0; i+1 < len(keyvals); i += 2 {
		k := fmt.Sprint(keyvals[i])
		v := keyvals[i+1]
		switch k {
		case "level":
			switch fmt.Sprint(v) {
			case "debug":
				lvl = slog.LevelDebug
			case "warn":
				lvl = slog.LevelWarn
			case "error":
				lvl = slog.LevelError
			}
		case "msg":
			msg = fmt.Sprint(v)
		default:
			attrs = append(attrs, k, v)
		}
	}
	g.l.Log(context.Background(), lvl, msg, attrs...)
	return nil
}
