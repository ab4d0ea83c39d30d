package dnsfilter

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/wardgate/wardgate/policy"
)

// Config configures a Filter. Fields left zero take the defaults listed in
// the package documentation.
type Config struct {
	// Policy returns the current policy (an atomic load, so that a reload
	// takes effect at the next query). A nil policy refuses every query.
	Policy func() *policy.Policy

	// Self is the gateway's overlay address, where this filter and the
	// gateway's web console answer: console.DOMAIN resolves to it for the
	// identities the policy lets reach the console.
	Self netip.Addr

	// Upstreams are the resolvers names outside the overlay go to,
	// "host:port" (port 53 when omitted), tried in order, starting with
	// the one that answered last.
	Upstreams []string

	// Blocklists are files of names answered NXDOMAIN.
	Blocklists []string

	// AllowInternal are names (patterns as in blocklists) whose upstream
	// answers may point into private or overlay space.
	AllowInternal []string

	// EgressTTLMin and EgressTTLMax clamp how long an address learned for
	// an FQDN egress service stays allowed. Defaults 30s and 1h.
	EgressTTLMin, EgressTTLMax time.Duration

	// MaxEgressPerIdentity bounds the learned addresses per identity; the
	// oldest is forgotten first. Default 4096.
	MaxEgressPerIdentity int

	// QueryLog logs every answered query as dns.query. Blocks are always
	// logged as dns.block.
	QueryLog bool

	// RatePerIdentity (queries per second) and Burst size the per-identity
	// token bucket. Defaults 200 and 400.
	RatePerIdentity float64
	Burst           int

	// CacheSize bounds the forward cache, in questions. Default 10000;
	// negative disables the cache.
	CacheSize int

	// Timeout is the time one upstream gets for one try. Default 2s.
	Timeout time.Duration

	// MaxInflightPerIdentity bounds the upstream exchanges one identity
	// waits on at once (its questions that missed the cache); beyond it
	// that identity's next such question is SERVFAIL at once, so that
	// names that never resolve cannot take every upstream slot from the
	// others. Default 64 (of 1024 over all identities).
	MaxInflightPerIdentity int

	// TCPPerIdentity bounds the DNS-over-TCP connections one identity has
	// open; one more is closed as soon as it is accepted. Default 16.
	TCPPerIdentity int

	// TCPIdleTimeout closes a DNS-over-TCP connection that sent no query
	// for that long (the first query must come within Timeout). Default 10s.
	TCPIdleTimeout time.Duration

	// Auditing reports whether the gateway is in audit mode (gateway.toml
	// enforce = "audit"): service names hidden by policy are answered and
	// logged as dns.audit. Read on every query; nil means enforcing.
	Auditing func() bool

	// Quarantined reports whether an identity is in quarantine: it then
	// gets answers only for the services of the policy's [quarantine]
	// allow, everything else REFUSED (quarantine.go). Read on every
	// query; nil means nobody is.
	Quarantined func(*policy.Identity) bool

	// Audit receives dns.query, dns.block, dns.audit and dns.ratelimited
	// events, the event name as the message. nil discards.
	Audit *slog.Logger

	// Logger receives operational messages. nil discards.
	Logger *slog.Logger
}

// Defaults; see the package documentation.
const (
	DefaultEgressTTLMin           = 30 * time.Second
	DefaultEgressTTLMax           = time.Hour
	DefaultMaxEgressPerIdentity   = 4096
	DefaultRatePerIdentity        = 200
	DefaultBurst                  = 400
	DefaultCacheSize              = 10000
	DefaultTimeout                = 2 * time.Second
	DefaultMaxInflightPerIdentity = 64
	DefaultTCPPerIdentity         = 16
	DefaultTCPIdleTimeout         = 10 * time.Second
)

// withDefaults returns c with zero fields set to their defaults, or an
// error naming the field at fault.
func (c Config) withDefaults() (Config, error) {
	if c.EgressTTLMin == 0 {
		c.EgressTTLMin = DefaultEgressTTLMin
	}
	if c.EgressTTLMax == 0 {
		c.EgressTTLMax = DefaultEgressTTLMax
	}
	if c.EgressTTLMin < 0 || c.EgressTTLMax < c.EgressTTLMin {
		return c, fmt.Errorf("dnsfilter: egress TTL range [%v, %v] is empty", c.EgressTTLMin, c.EgressTTLMax)
	}
	if c.MaxEgressPerIdentity == 0 {
		c.MaxEgressPerIdentity = DefaultMaxEgressPerIdentity
	}
	if c.RatePerIdentity == 0 {
		c.RatePerIdentity = DefaultRatePerIdentity
	}
	if c.Burst == 0 {
		c.Burst = DefaultBurst
	}
	if c.CacheSize == 0 {
		c.CacheSize = DefaultCacheSize
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxInflightPerIdentity == 0 {
		c.MaxInflightPerIdentity = DefaultMaxInflightPerIdentity
	}
	if c.TCPPerIdentity == 0 {
		c.TCPPerIdentity = DefaultTCPPerIdentity
	}
	if c.TCPIdleTimeout == 0 {
		c.TCPIdleTimeout = DefaultTCPIdleTimeout
	}
	if c.Quarantined == nil {
		c.Quarantined = func(*policy.Identity) bool { return false }
	}
	if c.Auditing == nil {
		c.Auditing = func() bool { return false }
	}
	if c.MaxEgressPerIdentity < 0 || c.RatePerIdentity < 0 || c.Burst < 0 || c.Timeout < 0 ||
		c.MaxInflightPerIdentity < 0 || c.TCPPerIdentity < 0 || c.TCPIdleTimeout < 0 {
		return c, errors.New("dnsfilter: negative limit in config")
	}
	if c.Audit == nil {
		c.Audit = slog.New(slog.DiscardHandler)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	ups := make([]string, 0, len(c.Upstreams))
	for _, u := range c.Upstreams {
		a, err := normalizeUpstream(u)
		if err != nil {
			return c, err
		}
		ups = append(ups, a)
	}
	c.Upstreams = ups
	return c, nil
}

// normalizeUpstream turns "1.2.3.4", "1.2.3.4:53", "::1" or "[::1]:53" into
// host:port.
func normalizeUpstream(u string) (string, error) {
	if ap, err := netip.ParseAddrPort(u); err == nil {
		return ap.String(), nil
	}
	if a, err := netip.ParseAddr(u); err == nil {
		return netip.AddrPortFrom(a, 53).String(), nil
	}
	if _, _, err := net.SplitHostPort(u); err == nil {
		return u, nil
	}
	if u != "" {
		return net.JoinHostPort(u, "53"), nil
	}
	return "", fmt.Errorf("dnsfilter: upstream %q: empty address", u)
}

// View is what the filter reads of a policy; *policy.Policy satisfies it.
// It exists so that the stages can be tested against a small fake. Views
// are compared with == to notice a policy reload, so an implementation
// must be comparable (a pointer, as *policy.Policy is).
type View interface {
	Overlay() policy.Overlay
	IdentityByAddr(netip.Addr) *policy.Identity
	Service(name string) *policy.Service
	ServiceByName(fqdn string) *policy.Service
	EgressServices(fqdn string) []*policy.Service
	Services() []*policy.Service
	CanReach(id *policy.Identity, svc *policy.Service) bool
	ReachDecision(id *policy.Identity, svc *policy.Service) policy.Decision
	QuarantineAllows(svc *policy.Service) bool
}

var _ View = (*policy.Policy)(nil)

// policyView adapts Config.Policy to a func returning a View, keeping a nil
// *policy.Policy a nil View.
func policyView(f func() *policy.Policy) func() View {
	if f == nil {
		return func() View { return nil }
	}
	return func() View {
		if p := f(); p != nil {
			return p
		}
		return nil
	}
}
