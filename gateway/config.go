package gateway

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/wardgate/wardgate/overlay"

	"github.com/wardgate/wardgate/gateway/policysource"
	"github.com/wardgate/wardgate/policy"
)

// Config is gateway.toml: what one gateway needs besides the shared policy,
// its secrets, listeners and limits. Paths are relative to the file. Every
// field's zero value means the documented default (see Defaults).
type Config struct {
	Site           string `toml:"site"`
	Enforce        string `toml:"enforce"` // "enforce" (default) or "audit"
	Policy         string `toml:"policy"`
	PrivateKeyFile string `toml:"private_key_file"`
	Listen         string `toml:"listen"` // WireGuard UDP, default "0.0.0.0:51820"
	// StateDir keeps what a restart should not lose (peers' last
	// endpoints). Default: $STATE_DIRECTORY (systemd's StateDirectory=),
	// else "state" next to gateway.toml.
	StateDir string `toml:"state_dir"`

	DNS      DNSConfig        `toml:"dns"`
	Admin    AdminConfig      `toml:"admin"`
	Log      LogConfig        `toml:"log"`
	Limits   LimitsConfig     `toml:"limits"`
	Listener []ListenerConfig `toml:"listener"`
	// PolicySource, when its repo is set, replaces Policy: the policy is
	// followed from git (config_source.go).
	PolicySource PolicySourceConfig `toml:"policy_source"`

	// file is the path the config was read from; relative paths resolve
	// against its directory.
	file string
}

// DNSConfig is [dns].
type DNSConfig struct {
	Upstream      []string `toml:"upstream"`       // forwarders, host:port
	Blocklists    []string `toml:"blocklists"`     // files: domain lists or hosts format
	AllowInternal []string `toml:"allow_internal"` // names whose private answers are kept
	QueryLog      *bool    `toml:"query_log"`      // log every dns.query; default true
	// EgressTTLMin and EgressTTLMax clamp how long an address learnt from a
	// DNS answer stays reachable for FQDN egress (default 30s and 1h).
	EgressTTLMin time.Duration `toml:"egress_ttl_min"`
	EgressTTLMax time.Duration `toml:"egress_ttl_max"`
	// RatePerIdentity is the per-identity query rate (queries/s, default
	// 200) with a burst of twice that.
	RatePerIdentity float64 `toml:"rate_per_identity"`
}

// AdminConfig is [admin].
type AdminConfig struct {
	Socket  string `toml:"socket"`  // JSON over HTTP on a unix socket
	Metrics string `toml:"metrics"` // Prometheus /metrics address, optional
	// Web serves the console on a loopback address, for the gateway host
	// itself; on the overlay it is the built-in service "console".
	Web string `toml:"web"`
}

// LogConfig is [log].
type LogConfig struct {
	Audit string `toml:"audit"` // "-" (default) is stdout, else a file path
	Level string `toml:"level"` // operational log level: debug, info (default), warn, error
}

// LimitsConfig is [limits]: what keeps one identity from starving the others
// and what ends flows that are gone. wardgate's own keys (docs/design.md).
type LimitsConfig struct {
	// FlowsPerIdentity caps concurrent flows (TCP and UDP) per identity.
	FlowsPerIdentity int `toml:"flows_per_identity"`
	// PendingPerIdentity caps TCP flows still being set up (backend dial in
	// progress) per identity.
	PendingPerIdentity int `toml:"pending_per_identity"`
	// PendingTotal caps TCP handshakes in flight in the whole stack.
	PendingTotal int `toml:"pending_total"`
	// FlowsTotal caps live flows in the whole gateway, UDPFlowsTotal the
	// UDP flows it terminates (each holds a host socket while it idles):
	// new flows over them are refused before the process runs out of
	// descriptors (LimitNOFILE in the systemd unit) or memory.
	FlowsTotal    int `toml:"flows_total"`
	UDPFlowsTotal int `toml:"udp_flows_total"`
	// DialTimeout bounds a backend dial (each endpoint tried).
	DialTimeout time.Duration `toml:"dial_timeout"`
	// TCPIdle ends a TCP flow with no data either way for this long.
	TCPIdle time.Duration `toml:"tcp_idle"`
	// UDPIdle and DNSIdle end UDP flows (DNSIdle for destination port 53).
	UDPIdle time.Duration `toml:"udp_idle"`
	DNSIdle time.Duration `toml:"dns_idle"`
	// Drain is how long a stopping gateway lets live flows finish.
	Drain time.Duration `toml:"drain"`
	// MemoryMiB is the heap, in MiB, over which the gateway drops the
	// WireGuard data packets it receives until it has worked through what
	// it holds: what bounds the memory a flood can make it hold
	// (overlay.Config.HeapBudget).
	MemoryMiB int `toml:"memory_mib"`
}

// ListenerConfig is one [[listener]]: a host socket that fronts a service
// for LAN devices that cannot run WireGuard.
type ListenerConfig struct {
	Listen  string `toml:"listen"`  // host:port[/udp]
	Service string `toml:"service"` // a service name in the policy
}

// Defaults are the values a zero Config field stands for.
var Defaults = LimitsConfig{
	FlowsPerIdentity:   1024,
	PendingPerIdentity: 64,
	PendingTotal:       1024,
	FlowsTotal:         16384,
	UDPFlowsTotal:      4096,
	DialTimeout:        5 * time.Second,
	TCPIdle:            time.Hour,
	UDPIdle:            2 * time.Minute,
	DNSIdle:            30 * time.Second,
	Drain:              10 * time.Second,
	MemoryMiB:          overlay.DefaultHeapBudget >> 20,
}

// File returns the path the config was loaded from.
func (c *Config) File() string { return c.file }

// Path resolves p relative to the config file's directory.
func (c *Config) Path(p string) string {
	if p == "" || p == "-" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(c.file), p)
}

// paths resolves each of ps relative to the config file.
func (c *Config) paths(ps []string) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = c.Path(p)
	}
	return out
}

// Auditing reports whether the gateway lets would-be denials through.
func (c *Config) Auditing() bool { return c.Enforce == "audit" }

// LoadConfig reads and validates a gateway.toml. Unknown keys and bad values
// are errors naming file:line; the error is a *policy.LoadError listing all
// of them. It does not load the policy (see LoadPolicy).
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseConfig(path, data)
}

// maxConfigSize bounds gateway.toml: a few kilobytes in practice.
const maxConfigSize = 4 << 20

// ParseConfig is LoadConfig on bytes already read.
func ParseConfig(path string, data []byte) (*Config, error) {
	if len(data) > maxConfigSize {
		return nil, &policy.LoadError{Problems: []policy.Problem{{File: path, Msg: fmt.Sprintf("file is %d bytes, more than the %d accepted", len(data), maxConfigSize)}}}
	}
	c := &Config{file: path}
	md, err := toml.Decode(string(data), c)
	if err != nil {
		return nil, &policy.LoadError{Problems: []policy.Problem{policy.TOMLProblem(path, err)}}
	}
	var probs []policy.Problem
	lines := strings.Split(string(data), "\n")
	bad := func(key, format string, args ...any) {
		line := keyLine(lines, key)
		probs = append(probs, policy.Problem{File: path, Line: line, Col: colOf(line), Msg: fmt.Sprintf(format, args...)})
	}
	for _, k := range md.Undecoded() {
		bad(k.String(), "unknown key %s", policy.Quote(k.String()))
	}
	c.checkSet(md, bad)
	c.applyDefaults()
	c.validate(bad)
	c.checkSource(md, bad)
	if len(probs) > 0 {
		return nil, &policy.LoadError{Problems: probs}
	}
	return c, nil
}

func (c *Config) applyDefaults() {
	if c.Enforce == "" {
		c.Enforce = "enforce"
	}
	if c.Listen == "" {
		c.Listen = "0.0.0.0:51820"
	}
	if c.Log.Audit == "" {
		c.Log.Audit = "-"
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	c.sourceDefaults()
	if c.DNS.QueryLog == nil {
		t := true
		c.DNS.QueryLog = &t
	}
	l, d := &c.Limits, Defaults
	setInt := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	setDur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	setInt(&l.FlowsPerIdentity, d.FlowsPerIdentity)
	setInt(&l.PendingPerIdentity, d.PendingPerIdentity)
	setInt(&l.PendingTotal, d.PendingTotal)
	setInt(&l.FlowsTotal, d.FlowsTotal)
	setInt(&l.UDPFlowsTotal, d.UDPFlowsTotal)
	setInt(&l.MemoryMiB, d.MemoryMiB)
	setDur(&l.DialTimeout, d.DialTimeout)
	setDur(&l.TCPIdle, d.TCPIdle)
	setDur(&l.UDPIdle, d.UDPIdle)
	setDur(&l.DNSIdle, d.DNSIdle)
	setDur(&l.Drain, d.Drain)
}

// checkSet refuses limits and durations written as zero or negative: zero
// would silently mean the default, and a negative one makes no sense. It
// runs before the defaults fill in what was left out.
func (c *Config) checkSet(md toml.MetaData, bad func(key, format string, args ...any)) {
	l := c.Limits
	for _, v := range []struct {
		key string
		n   int64
		dur bool
	}{
		{"limits.flows_per_identity", int64(l.FlowsPerIdentity), false},
		{"limits.pending_per_identity", int64(l.PendingPerIdentity), false},
		{"limits.pending_total", int64(l.PendingTotal), false},
		{"limits.flows_total", int64(l.FlowsTotal), false},
		{"limits.udp_flows_total", int64(l.UDPFlowsTotal), false},
		{"limits.memory_mib", int64(l.MemoryMiB), false},
		{"limits.dial_timeout", int64(l.DialTimeout), true},
		{"limits.tcp_idle", int64(l.TCPIdle), true},
		{"limits.udp_idle", int64(l.UDPIdle), true},
		{"limits.dns_idle", int64(l.DNSIdle), true},
		{"limits.drain", int64(l.Drain), true},
		{"dns.egress_ttl_min", int64(c.DNS.EgressTTLMin), true},
		{"dns.egress_ttl_max", int64(c.DNS.EgressTTLMax), true},
		{"policy_source.poll", int64(c.PolicySource.Poll), true},
	} {
		if !md.IsDefined(strings.Split(v.key, ".")...) || v.n > 0 {
			continue
		}
		if v.dur {
			bad(v.key, "%s = %q must be positive (leave it out for the default)", v.key, time.Duration(v.n))
		} else {
			bad(v.key, "%s = %d must be positive (leave it out for the default)", v.key, v.n)
		}
	}
	if r := c.DNS.RatePerIdentity; md.IsDefined("dns", "rate_per_identity") && !(r > 0 && r <= 1e9) {
		bad("dns.rate_per_identity", "dns.rate_per_identity = %v must be a positive number of queries per second", r)
	}
}

func (c *Config) validate(bad func(key, format string, args ...any)) {
	if c.Site == "" {
		bad("site", "site is required: the name of this gateway's [[site]] in the policy")
	} else if err := policy.CheckName(c.Site); err != nil {
		bad("site", "site: %v", err)
	}
	if c.Policy == "" && !c.FollowsRepo() {
		bad("policy", "policy is required: the path of the shared policy.toml (or a [policy_source] repository)")
	}
	if c.PrivateKeyFile == "" {
		bad("private_key_file", "private_key_file is required")
	}
	if c.Enforce != "enforce" && c.Enforce != "audit" {
		bad("enforce", "enforce %s: want \"enforce\" or \"audit\"", policy.Quote(c.Enforce))
	}
	if _, err := netip.ParseAddrPort(c.Listen); err != nil {
		bad("listen", "listen %s: want ip:port", policy.Quote(c.Listen))
	}
	for _, u := range c.DNS.Upstream {
		_, errAP := netip.ParseAddrPort(u)
		_, errA := netip.ParseAddr(u)
		if errAP != nil && errA != nil {
			bad("dns.upstream", "dns upstream %s: want ip or ip:port", policy.Quote(u))
		}
	}
	if c.Admin.Metrics != "" {
		if _, err := netip.ParseAddrPort(c.Admin.Metrics); err != nil {
			bad("admin.metrics", "admin metrics %s: want ip:port", policy.Quote(c.Admin.Metrics))
		}
	}
	if c.Admin.Web != "" {
		if ap, err := netip.ParseAddrPort(c.Admin.Web); err != nil {
			bad("admin.web", "admin web %s: want ip:port", policy.Quote(c.Admin.Web))
		} else if !ap.Addr().IsLoopback() {
			bad("admin.web", "admin web %s: the console is served on loopback only (127.0.0.1 or ::1); on the overlay, grant it with a rule to \"console\"", policy.Quote(c.Admin.Web))
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "log level %s: want debug, info, warn or error", policy.Quote(c.Log.Level))
	}
	if c.DNS.EgressTTLMax != 0 && c.DNS.EgressTTLMin > c.DNS.EgressTTLMax {
		bad("dns.egress_ttl_min", "egress_ttl_min %v must not be above egress_ttl_max %v", c.DNS.EgressTTLMin, c.DNS.EgressTTLMax)
	}
	for i, ln := range c.Listener {
		if ln.Service == "" {
			bad(fmt.Sprintf("listener[%d].service", i), "listener %d: service is required", i+1)
		} else if err := policy.CheckName(ln.Service); err != nil {
			bad(fmt.Sprintf("listener[%d].service", i), "listener %d: service: %v", i+1, err)
		}
		if _, _, err := ParseListen(ln.Listen); err != nil {
			bad(fmt.Sprintf("listener[%d].listen", i), "listener %d: %v", i+1, err)
		}
	}
}

// ParseListen parses a [[listener]] listen value "host:port[/udp]".
func ParseListen(s string) (netip.AddrPort, policy.Proto, error) {
	proto := policy.ProtoTCP
	addr := s
	if a, p, ok := strings.Cut(s, "/"); ok {
		addr = a
		switch p {
		case "tcp":
		case "udp":
			proto = policy.ProtoUDP
		default:
			return netip.AddrPort{}, 0, fmt.Errorf("listen %s: protocol %s: want tcp or udp", policy.Quote(s), policy.Quote(p))
		}
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return netip.AddrPort{}, 0, fmt.Errorf("listen %s: want ip:port[/udp]", policy.Quote(s))
	}
	return ap, proto, nil
}

// LoadPolicy loads the policy the config names, checks that the config
// fits it (the site exists, every listener's service exists) and runs its
// [[test]]s: a policy whose tests fail is refused, by run as by reload and
// check. The error is a *policy.LoadError, one problem per failing test at
// the test's line.
func (c *Config) LoadPolicy() (*policy.Policy, error) {
	if c.FollowsRepo() {
		return nil, fmt.Errorf("%s: the policy comes from [policy_source] %s: check the policy file in a checkout of it", c.file, policysource.Redact(c.PolicySource.Repo))
	}
	p, err := policy.Load(c.Path(c.Policy))
	if err != nil {
		return nil, err
	}
	return c.vetPolicy(p)
}

// vetPolicy checks that the config fits p and runs p's [[test]]s.
func (c *Config) vetPolicy(p *policy.Policy) (*policy.Policy, error) {
	if err := c.CheckAgainst(p); err != nil {
		return nil, err
	}
	var failed []policy.Problem
	for _, r := range p.RunTests() {
		if !r.Passed {
			failed = append(failed, r.Problem)
		}
	}
	if len(failed) > 0 {
		return nil, &policy.LoadError{Problems: failed}
	}
	return p, nil
}

// CheckAgainst reports config references that the policy does not define.
func (c *Config) CheckAgainst(p *policy.Policy) error {
	data, _ := os.ReadFile(c.file)
	lines := strings.Split(string(data), "\n")
	var probs []policy.Problem
	if p.Site(c.Site) == nil {
		line := keyLine(lines, "site")
		probs = append(probs, policy.Problem{File: c.file, Line: line, Col: colOf(line), Msg: fmt.Sprintf("unknown site %q (not a [[site]] in %s)", c.Site, p.File())})
	}
	for i, ln := range c.Listener {
		if ln.Service == "" {
			continue
		}
		msg := ""
		switch svc := p.Service(ln.Service); {
		case svc == nil:
			msg = fmt.Sprintf("listener %d: unknown service %q", i+1, ln.Service)
		case svc == p.Console():
			msg = fmt.Sprintf("listener %d: the console is served on the overlay and on [admin] web, not through a listener", i+1)
		case !svc.VIP.IsValid():
			// A listener forwards to a service's address; an egress-only
			// service has none (its destinations are learnt from DNS).
			msg = fmt.Sprintf("listener %d: service %q is egress-only (no address to forward to)", i+1, ln.Service)
		}
		if msg != "" {
			line := keyLine(lines, fmt.Sprintf("listener[%d].service", i))
			probs = append(probs, policy.Problem{File: c.file, Line: line, Col: colOf(line), Msg: msg})
		}
	}
	if len(probs) > 0 {
		return &policy.LoadError{Problems: probs}
	}
	return nil
}
