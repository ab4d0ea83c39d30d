package dnsfilter

import (
	"fmt"
	"slices"
	"time"

	"github.com/wardgate/wardgate/internal/dnsname"
)

// Settings are the parts of a Config that a running Filter takes anew (a
// gateway reload): Upstreams, AllowInternal, QueryLog, EgressTTLMin and
// EgressTTLMax. The rest (rate limits, timeouts, the cache size) is fixed
// at New: it sizes what the Filter holds. CompileSettings makes Settings,
// SetSettings puts them in force; a reload checks them before it changes
// anything, and puts them in force only with the rest.
type Settings struct{ s *settings }

// settings are Settings compiled.
type settings struct {
	upstreams                  []string     // host:port, tried in order
	allowPatterns              []string     // AllowInternal as given, to notice a change
	allow                      *dnsname.Set // names whose answers are not stripped
	queryLog                   bool
	egressTTLMin, egressTTLMax time.Duration
}

// CompileSettings checks and compiles the Settings fields of cfg (defaults
// as for New).
func CompileSettings(cfg Config) (Settings, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return Settings{}, err
	}
	s, err := compileSettings(cfg)
	return Settings{s}, err
}

// compileSettings compiles the Settings fields of cfg, defaults applied.
func compileSettings(cfg Config) (*settings, error) {
	allow := new(dnsname.Set)
	for _, p := range cfg.AllowInternal {
		if err := allow.Add(dnsname.Canonical(p)); err != nil {
			return nil, fmt.Errorf("dnsfilter: allow_internal: %w", err)
		}
	}
	return &settings{
		upstreams:     cfg.Upstreams,
		allowPatterns: slices.Clone(cfg.AllowInternal),
		allow:         allow,
		queryLog:      cfg.QueryLog,
		egressTTLMin:  cfg.EgressTTLMin,
		egressTTLMax:  cfg.EgressTTLMax,
	}, nil
}

// SetSettings puts s in force for the next query. When the upstreams or
// allow_internal change, the cache is flushed: its answers came from the
// old upstreams, or were stripped by the old allow_internal. An exchange
// still in flight answers its question but is not cached (its fetch read
// the cache's generation before the settings, so a flush between the two
// is seen). Addresses already learnt for FQDN egress keep their expiry.
func (f *Filter) SetSettings(s Settings) {
	old := f.settings.Swap(s.s)
	if !slices.Equal(old.upstreams, s.s.upstreams) || !slices.Equal(old.allowPatterns, s.s.allowPatterns) {
		f.fwd.preferred.Store(0)
		f.fwd.cache.flush()
	}
}
