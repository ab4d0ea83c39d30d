package policy

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// ParsePortRange parses "443/tcp", "5000-5010/udp", "443" (tcp) or "icmp",
// as rules, tests and `wardgate explain --to` write ports.
func ParsePortRange(s string) (PortRange, error) {
	if strings.EqualFold(s, "icmp") {
		return PortRange{Proto: ProtoICMP}, nil
	}
	ports, proto := s, ProtoTCP
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		ports = s[:i]
		switch strings.ToLower(s[i+1:]) {
		case "tcp":
		case "udp":
			proto = ProtoUDP
		default:
			return PortRange{}, fmt.Errorf("unknown protocol %q in %q (tcp, udp or icmp)", s[i+1:], s)
		}
	}
	lo, hi := ports, ports
	if i := strings.IndexByte(ports, '-'); i >= 0 {
		lo, hi = ports[:i], ports[i+1:]
	}
	l, err := parsePort(lo)
	if err != nil {
		return PortRange{}, fmt.Errorf("%w in %q", err, s)
	}
	h, err := parsePort(hi)
	if err != nil {
		return PortRange{}, fmt.Errorf("%w in %q", err, s)
	}
	if l > h {
		return PortRange{}, fmt.Errorf("reversed port range %q (%d > %d)", s, l, h)
	}
	return PortRange{Proto: proto, Lo: l, Hi: h}, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.Atoi(s)
	if err != nil || s == "" || s[0] == '+' || s[0] == '-' {
		return 0, fmt.Errorf("bad port %q", s)
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %d out of range 1-65535", n)
	}
	return uint16(n), nil
}

// parseEndpoint parses "192.168.5.10:443", "192.168.5.11:4000-4010/udp",
// "10.1.2.0/24:80", "[fd00::1]:443/tcp", "[fd00::/64]:80".
func parseEndpoint(s string) (Endpoint, error) {
	// The port part starts after the last ':' that is not inside brackets.
	var host, rest string
	if strings.HasPrefix(s, "[") {
		i := strings.IndexByte(s, ']')
		if i < 0 || i+1 >= len(s) || s[i+1] != ':' {
			return Endpoint{}, fmt.Errorf("endpoint %q: want [ADDR]:PORT[/PROTO]", s)
		}
		host, rest = s[1:i], s[i+2:]
	} else {
		// IPv4 address or CIDR: the first ':' ends it.
		i := strings.IndexByte(s, ':')
		if i < 0 {
			return Endpoint{}, fmt.Errorf("endpoint %q has no port: want ADDR:PORT[/PROTO]", s)
		}
		host, rest = s[:i], s[i+1:]
	}
	// rest is PORTS[/PROTO]; host may be a CIDR whose '/' came before ':'.
	var pfx netip.Prefix
	if strings.Contains(host, "/") {
		p, err := netip.ParsePrefix(host)
		if err != nil {
			return Endpoint{}, fmt.Errorf("endpoint %q: bad CIDR %q", s, host)
		}
		if p != p.Masked() {
			return Endpoint{}, fmt.Errorf("endpoint %q: CIDR %q has host bits set (did you mean %s?)", s, host, p.Masked())
		}
		pfx = p
	} else {
		a, err := netip.ParseAddr(host)
		if err != nil {
			return Endpoint{}, fmt.Errorf("endpoint %q: host %q must be an IP address or CIDR", s, host)
		}
		if a.Zone() != "" {
			return Endpoint{}, fmt.Errorf("endpoint %q: zoned addresses are not supported", s)
		}
		a = a.Unmap()
		pfx = netip.PrefixFrom(a, a.BitLen())
	}
	if strings.EqualFold(rest, "icmp") {
		return Endpoint{}, fmt.Errorf("endpoint %q: endpoints are tcp or udp ports", s)
	}
	r, err := ParsePortRange(rest)
	if err != nil {
		return Endpoint{}, fmt.Errorf("endpoint %q: %w", s, err)
	}
	return Endpoint{Prefix: pfx, Ports: r}, nil
}

// mergeRanges sorts ranges by protocol and start and merges overlapping or
// adjacent ones.
func mergeRanges(rs []PortRange) []PortRange {
	if len(rs) == 0 {
		return nil
	}
	s := append([]PortRange(nil), rs...)
	sort.Slice(s, func(i, j int) bool {
		if s[i].Proto != s[j].Proto {
			return s[i].Proto < s[j].Proto
		}
		return s[i].Lo < s[j].Lo
	})
	out := s[:1]
	for _, r := range s[1:] {
		last := &out[len(out)-1]
		if r.Proto == last.Proto && uint32(r.Lo) <= uint32(last.Hi)+1 {
			if r.Hi > last.Hi {
				last.Hi = r.Hi
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

// intersectRanges returns a ∩ b; both merged.
func intersectRanges(a, b []PortRange) []PortRange {
	var out []PortRange
	for _, x := range a {
		for _, y := range b {
			if x.Proto != y.Proto {
				continue
			}
			lo, hi := max(x.Lo, y.Lo), min(x.Hi, y.Hi)
			if lo <= hi {
				out = append(out, PortRange{Proto: x.Proto, Lo: lo, Hi: hi})
			}
		}
	}
	return mergeRanges(out)
}

func rangesString(rs []PortRange) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.String()
	}
	return strings.Join(parts, ", ")
}
