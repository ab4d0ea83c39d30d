package dnsfilter

import (
	"net/netip"
	"strings"
)

// reverseAddr parses a full reverse-lookup name ("4.3.2.1.in-addr.arpa", or
// 32 nibbles and "ip6.arpa"), lower case without the trailing dot, into its
// address. Partial names (a zone, not an address) are not addresses.
func reverseAddr(name string) (netip.Addr, bool) {
	if rest, ok := strings.CutSuffix(name, ".in-addr.arpa"); ok {
		var b [4]byte
		for i := 3; i >= 0; i-- {
			label := rest
			if i > 0 {
				j := strings.IndexByte(rest, '.')
				if j < 0 {
					return netip.Addr{}, false
				}
				label, rest = rest[:j], rest[j+1:]
			}
			n, ok := decimalByte(label)
			if !ok {
				return netip.Addr{}, false
			}
			b[i] = n
		}
		return netip.AddrFrom4(b), true
	}
	if rest, ok := strings.CutSuffix(name, ".ip6.arpa"); ok && len(rest) == 63 {
		var b [16]byte
		for i := range 32 {
			c := rest[2*i]
			if i < 31 && rest[2*i+1] != '.' {
				return netip.Addr{}, false
			}
			var v byte
			switch {
			case '0' <= c && c <= '9':
				v = c - '0'
			case 'a' <= c && c <= 'f':
				v = c - 'a' + 10
			default:
				return netip.Addr{}, false
			}
			pos := 31 - i // nibble index from the most significant
			if pos%2 == 0 {
				b[pos/2] |= v << 4
			} else {
				b[pos/2] |= v
			}
		}
		return netip.AddrFrom16(b), true
	}
	return netip.Addr{}, false
}

// decimalByte parses "0".."255" without leading zeros.
func decimalByte(s string) (byte, bool) {
	if s == "" || len(s) > 3 || len(s) > 1 && s[0] == '0' {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	if n > 255 {
		return 0, false
	}
	return byte(n), true
}
