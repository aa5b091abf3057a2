package serve

import (
	"cmp"
	"errors"
	"flag"
	"log/slog"
	"os"
	"time"

	"github.com/go-logr/logr"

	"github.com/splice-dev/splice/host"
)

// DefaultAddr is the address served when Config.Addr is empty.
const DefaultAddr = "127.0.0.1:8080"

// DefaultDrainTimeout is the drain bound when Config.DrainTimeout is zero.
const DefaultDrainTimeout = 30 * time.Second

// Config is what a host application decides: where it serves, the shared directory, the
// initial plugin and the slot's bounds. RegisterFlags binds the usual command line to it.
type Config struct {
	// Addr is the TCP address of the application's service (HTTP; the default of a Service
	// with no Addr). Default DefaultAddr.
	Addr string
	// AddrFile, when set, receives the first service's bound address once it listens
	// (written atomically), for Addr with port 0.
	AddrFile string
	// SharedDir is the directory shared with the agent: the control socket and plugin files.
	// Required.
	SharedDir string
	// PluginPath is loaded and swapped in at a cold start (a re-exec restores what served
	// before instead). Optional: without it the host answers host.ErrNoVersion until the
	// agent swaps a version in.
	PluginPath string
	// PluginDigest names PluginPath. Default: the file's sha256 (control.FileDigest).
	PluginDigest string
	// APIVersion is the version of the plugin contract the host is built against
	// (host.Options.APIVersion).
	APIVersion string
	// MaxVersions, MaxExtraRSSBytes and PanicThreshold are host.Options' fields of the same
	// names.
	MaxVersions      int
	MaxExtraRSSBytes uint64
	PanicThreshold   int
	// DrainTimeout bounds a re-exec's drain and the shutdown's. Default DefaultDrainTimeout.
	DrainTimeout time.Duration
	// SlotName is host.Options.Name (one slot per Handoff here). Default "default".
	SlotName string
	// FactsFile is host.Options.FactsFile (hosts stripped with -s -w).
	FactsFile string
	// Verbosity is the log level of the default logger (-v). Ignored when Logger is set.
	Verbosity int
	// Logger receives the logs of the wiring, the hand-off, the slot and the control
	// endpoint. Default: log/slog text on standard error at Verbosity.
	Logger logr.Logger
}

// RegisterFlags registers the standard flags on fs, with the greeter example's names, bound
// to c's fields; their defaults are c's values (DefaultAddr and DefaultDrainTimeout when zero):
// -addr, -addr-file, -shared, -plugin, -digest, -max-versions, -max-extra-rss,
// -panic-threshold, -drain-timeout, -v. -api-version is left to the application, whose
// contract package owns the default.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Addr = cmp.Or(c.Addr, DefaultAddr)
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	fs.StringVar(&c.Addr, "addr", c.Addr, "TCP address to serve on")
	fs.StringVar(&c.AddrFile, "addr-file", c.AddrFile, "write the bound address here once listening (for -addr with port 0)")
	fs.StringVar(&c.SharedDir, "shared", c.SharedDir, "directory shared with the agent: control socket and plugin files (required)")
	fs.StringVar(&c.PluginPath, "plugin", c.PluginPath, "plugin file to load and serve at a cold start (must be inside -shared)")
	fs.StringVar(&c.PluginDigest, "digest", c.PluginDigest, "digest naming -plugin (default: sha256 of the file)")
	fs.IntVar(&c.MaxVersions, "max-versions", c.MaxVersions, "re-exec after a swap once more plugin files than this were opened (0: never)")
	fs.Uint64Var(&c.MaxExtraRSSBytes, "max-extra-rss", c.MaxExtraRSSBytes, "re-exec after a swap once RSS exceeds the start by this many bytes (0: never)")
	fs.IntVar(&c.PanicThreshold, "panic-threshold", c.PanicThreshold, "panics of a version before automatic rollback (0: library default, <0: never)")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", c.DrainTimeout, "longest wait for connections to close before a re-exec or at shutdown")
	fs.IntVar(&c.Verbosity, "v", c.Verbosity, "log verbosity")
}

// withDefaults checks c and fills its defaults.
func (c Config) withDefaults() (Config, error) {
	if c.SharedDir == "" {
		return c, errors.New("serve: Config.SharedDir (-shared) is required: the directory holding the control socket and plugin files")
	}
	c.Addr = cmp.Or(c.Addr, DefaultAddr)
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.Logger.GetSink() == nil {
		c.Logger = logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.Level(-c.Verbosity)}))
	}
	return c, nil
}

// slotOptions are the host.Options c stands for.
func (c Config) slotOptions(h *host.Handoff) host.Options {
	return host.Options{
		Name:             c.SlotName,
		Logger:           c.Logger,
		FactsFile:        c.FactsFile,
		APIVersion:       c.APIVersion,
		PanicThreshold:   c.PanicThreshold,
		MaxVersions:      c.MaxVersions,
		MaxExtraRSSBytes: c.MaxExtraRSSBytes,
		Handoff:          h,
	}
}
