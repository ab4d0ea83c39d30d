package communityid

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// baseline holds the spec's reference outputs: the files
// baseline/baseline_deflt.json (seed 0) and baseline/baseline_seed1.json
// (seed 1) of https://github.com/corelight/community-id-spec at commit
// c4ec2bc40d65ddbcbdd642582bf5609797a80772, which the spec's
// baseline/make-json.sh produced from the pcaps in its pcaps/ directory
// with the reference implementation. Both files list the same flows in the
// same order; a flow's two rows are its two directions. Ports are as the
// files give them: for ICMP and ICMPv6 the message type, then the code
// (one-way types) or the counterpart type (request/reply types); none
// (null) for RSVP, protocol 46.
var baseline = []struct {
	proto        uint8
	src, dst     string
	sport, dport uint16
	seed0, seed1 string
}{
	{58, "fe80::200:86ff:fe05:80da", "fe80::260:97ff:fe07:69ea", 135, 136, "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=", "1:kHa1FhMYIT6Ym2Vm2AOtoOARDzY="},
	{58, "fe80::260:97ff:fe07:69ea", "fe80::200:86ff:fe05:80da", 136, 135, "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=", "1:kHa1FhMYIT6Ym2Vm2AOtoOARDzY="},
	{58, "fe80::260:97ff:fe07:69ea", "fe80::200:86ff:fe05:80da", 135, 136, "1:zavyT/cezQr1fmImYCwYnMXbgck=", "1:2hSqmsDZ2kdcY9kbiUzOEBic0iM="},
	{58, "fe80::200:86ff:fe05:80da", "fe80::260:97ff:fe07:69ea", 136, 135, "1:zavyT/cezQr1fmImYCwYnMXbgck=", "1:2hSqmsDZ2kdcY9kbiUzOEBic0iM="},
	{58, "3ffe:501:1800:2345::2", "3ffe:507:0:1:200:86ff:fe05:80da", 3, 0, "1:2ObVBgIn28oZvibYZhZMBgh7WdQ=", "1:lVEtCZpYu84Xqaa++3lXFyuu2n4="},
	{58, "3ffe:501:410:0:2c0:dfff:fe47:33e", "3ffe:507:0:1:200:86ff:fe05:80da", 1, 4, "1:hLZd0XGWojozrvxqE0dWB1iM6R0=", "1:W8MHwXpWzpoSTD+cGcaJr4u0ys8="},
	{58, "3ffe:507:0:1:200:86ff:fe05:80da", "3ffe:501:0:1001::2", 128, 129, "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg=", "1:GfZxjAkDk2MkegpBYHV6tadtFXQ="},
	{58, "3ffe:501:0:1001::2", "3ffe:507:0:1:200:86ff:fe05:80da", 129, 128, "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg=", "1:GfZxjAkDk2MkegpBYHV6tadtFXQ="},
	{58, "fe80::200:86ff:fe05:80da", "ff02::2", 133, 134, "1:hO+sN4H+MG5MY/8hIrXPqc4ZQz0=", "1:L7Ka0ZMYu+J3bL4ulW2PrqyXNo8="},
	{58, "fe80::260:97ff:fe07:69ea", "ff02::1", 134, 133, "1:pkvHqCL88/tg1k4cPigmZXUtL00=", "1:K/ee5UCqAMAQXDorP5nSa2CGLjc="},
	{1, "192.168.0.89", "192.168.0.1", 8, 0, "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=", "1:03g6IloqVBdcZlPyX8r0hgoE7kA="},
	{1, "192.168.0.1", "192.168.0.89", 0, 8, "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=", "1:03g6IloqVBdcZlPyX8r0hgoE7kA="},
	{1, "10.0.0.1", "10.0.0.2", 11, 0, "1:YHxtAirCG//0OzkcVAukqKQN9xM=", "1:XjUibYHaafLQ3pxQeiMI8g25q20="},
	{6, "2001:470:e5bf:dead:4957:2174:e82c:4887", "2607:f8b0:400c:c03::1a", 63943, 25, "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=", "1:eJYTW6AOzFLlSUoESovMjnu7rMw="},
	{6, "2607:f8b0:400c:c03::1a", "2001:470:e5bf:dead:4957:2174:e82c:4887", 25, 63943, "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=", "1:eJYTW6AOzFLlSUoESovMjnu7rMw="},
	{132, "192.168.170.8", "192.168.170.56", 7, 7, "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs=", "1:5w3ZRjeKBzqT3zsaEECDGjUbYeg="},
	{132, "192.168.170.56", "192.168.170.8", 7, 7, "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs=", "1:5w3ZRjeKBzqT3zsaEECDGjUbYeg="},
	{6, "128.232.110.120", "66.35.250.204", 34855, 80, "1:LQU9qZlK+B5F3KDmev6m5PMibrg=", "1:3V71V58M3Ksw/yuFALMcW0LAHvc="},
	{6, "66.35.250.204", "128.232.110.120", 80, 34855, "1:LQU9qZlK+B5F3KDmev6m5PMibrg=", "1:3V71V58M3Ksw/yuFALMcW0LAHvc="},
	{17, "192.168.1.52", "8.8.8.8", 54585, 53, "1:d/FP5EW3wiY1vCndhwleRRKHowQ=", "1:Q9We8WO3piVF8yEQBNJF4uiSVrI="},
	{17, "8.8.8.8", "192.168.1.52", 53, 54585, "1:d/FP5EW3wiY1vCndhwleRRKHowQ=", "1:Q9We8WO3piVF8yEQBNJF4uiSVrI="},
	{46, "10.1.12.1", "10.1.12.2", 0, 0, "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw=", "1:rYir8gphR31noO9iDRQmF/BteEI="},
	{46, "10.1.12.2", "10.1.12.1", 0, 0, "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw=", "1:rYir8gphR31noO9iDRQmF/BteEI="},
}

// TestBaseline: every reference output, through ID and IDWithSeed and,
// for ICMP, IDICMP.
func TestBaseline(t *testing.T) {
	for _, v := range baseline {
		src := netip.AddrPortFrom(netip.MustParseAddr(v.src), v.sport)
		dst := netip.AddrPortFrom(netip.MustParseAddr(v.dst), v.dport)
		if got := ID(src, dst, v.proto); got != v.seed0 {
			t.Errorf("ID(%v, %v, %d) = %s, want %s", src, dst, v.proto, got, v.seed0)
		}
		if got := IDWithSeed(1, src, dst, v.proto); got != v.seed1 {
			t.Errorf("IDWithSeed(1, %v, %v, %d) = %s, want %s", src, dst, v.proto, got, v.seed1)
		}
		if v.proto == protoICMP || v.proto == protoICMPv6 {
			typ, code := uint8(v.sport), uint8(v.dport)
			if got := IDICMP(src.Addr(), dst.Addr(), typ, code); got != v.seed0 {
				t.Errorf("IDICMP(%v, %v, %d, %d) = %s, want %s", src.Addr(), dst.Addr(), typ, code, got, v.seed0)
			}
			if got := IDICMPWithSeed(1, src.Addr(), dst.Addr(), typ, code); got != v.seed1 {
				t.Errorf("IDICMPWithSeed(1, %v, %v, %d, %d) = %s, want %s", src.Addr(), dst.Addr(), typ, code, got, v.seed1)
			}
		}
	}
}

// TestSpecExample: the README's example, two directions of one TCP flow
// ordered into 10.0.0.1, 127.0.0.1, 1234, 80.
func TestSpecExample(t *testing.T) {
	a := ID(netip.MustParseAddrPort("10.0.0.1:1234"), netip.MustParseAddrPort("127.0.0.1:80"), protoTCP)
	b := ID(netip.MustParseAddrPort("127.0.0.1:80"), netip.MustParseAddrPort("10.0.0.1:1234"), protoTCP)
	if a != b || a != naive(0, netip.MustParseAddrPort("10.0.0.1:1234"), netip.MustParseAddrPort("127.0.0.1:80"), protoTCP, true) {
		t.Errorf("directions %s and %s", a, b)
	}
}

// naive is the spec's pseudo code written out plainly, to compare with.
func naive(seed uint16, src, dst netip.AddrPort, proto uint8, withPorts bool) string {
	s, d := src.Addr().Unmap().AsSlice(), dst.Addr().Unmap().AsSlice()
	sp, dp := src.Port(), dst.Port()
	if c := bytes.Compare(s, d); c > 0 || c == 0 && sp > dp {
		s, d, sp, dp = d, s, dp, sp
	}
	var in []byte
	in = binary.BigEndian.AppendUint16(in, seed)
	in = append(in, s...)
	in = append(in, d...)
	in = append(in, proto, 0)
	if withPorts {
		in = binary.BigEndian.AppendUint16(in, sp)
		in = binary.BigEndian.AppendUint16(in, dp)
	}
	sum := sha1.Sum(in)
	return "1:" + base64.StdEncoding.EncodeToString(sum[:])
}

// randomEndpoint is an IPv4 or IPv6 address from a small pool (so that
// equal addresses, which the ports then order, come up often) and a port
// from a small range.
func randomEndpoint(r *rand.Rand, v6 bool) netip.AddrPort {
	var a netip.Addr
	if v6 {
		b := [16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(r.IntN(4))}
		b[r.IntN(16)] ^= byte(r.IntN(256)) // sometimes in a high byte
		a = netip.AddrFrom16(b)
	} else {
		a = netip.AddrFrom4([4]byte{10, byte(r.IntN(2)), 0, byte(r.IntN(4))})
	}
	return netip.AddrPortFrom(a, uint16(r.IntN(4))<<uint(r.IntN(16)))
}

// TestProperties over random flows: ID matches the naive hash; both
// directions get one ID; an IPv4 address mapped into IPv6 hashes as
// itself; the seed changes the ID.
func TestProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		v6 := r.IntN(2) == 0
		src, dst := randomEndpoint(r, v6), randomEndpoint(r, v6)
		proto := []uint8{protoTCP, protoUDP, protoSCTP, 47, 46}[r.IntN(5)]
		seed := uint16(r.IntN(3))
		withPorts := proto == protoTCP || proto == protoUDP || proto == protoSCTP
		id := IDWithSeed(seed, src, dst, proto)
		if want := naive(seed, src, dst, proto, withPorts); id != want {
			t.Fatalf("IDWithSeed(%d, %v, %v, %d) = %s, naive %s", seed, src, dst, proto, id, want)
		}
		if back := IDWithSeed(seed, dst, src, proto); back != id {
			t.Fatalf("%v -> %v: %s, back: %s", src, dst, id, back)
		}
		if !v6 {
			mapped := netip.AddrPortFrom(netip.AddrFrom16(src.Addr().As16()), src.Port())
			if got := IDWithSeed(seed, mapped, dst, proto); got != id {
				t.Fatalf("%v mapped as %v: %s, want %s", src, mapped, got, id)
			}
		}
		if other := IDWithSeed(seed+1, src, dst, proto); other == id {
			t.Fatalf("seeds %d and %d give %s", seed, seed+1, id)
		}
	}
}

// TestICMPDirections: a request and its reply share an ID, whatever the
// codes; a one-way message from a to b and the same from b to a do not.
func TestICMPDirections(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, v6 := range []bool{false, true} {
		counter := icmpCounterpart
		if v6 {
			counter = icmp6Counterpart
		}
		for range 2000 {
			a, b := randomEndpoint(r, v6).Addr(), randomEndpoint(r, v6).Addr()
			typ, code := uint8(r.IntN(256)), uint8(r.IntN(256))
			id := IDICMP(a, b, typ, code)
			if reply, ok := counter[typ]; ok {
				if back := IDICMP(b, a, reply, uint8(r.IntN(256))); back != id {
					t.Fatalf("type %d %v -> %v: %s; reply %d back: %s", typ, a, b, id, reply, back)
				}
			} else if a != b {
				if back := IDICMP(b, a, typ, code); back == id {
					t.Fatalf("one-way type %d: %v -> %v and back both %s", typ, a, b, id)
				}
			}
		}
	}
}

// TestInvalid: without two addresses there is no flow to name.
func TestInvalid(t *testing.T) {
	ok := netip.MustParseAddrPort("10.0.0.1:1")
	if got := ID(netip.AddrPort{}, ok, protoTCP); got != "" {
		t.Errorf("invalid source: %q", got)
	}
	if got := IDICMP(ok.Addr(), netip.Addr{}, 8, 0); got != "" {
		t.Errorf("invalid destination: %q", got)
	}
}

// TestAllocations: the result string is the only allocation.
func TestAllocations(t *testing.T) {
	src, dst := netip.MustParseAddrPort("[2001:db8::1]:40000"), netip.MustParseAddrPort("[2001:db8::2]:443")
	if n := testing.AllocsPerRun(100, func() { ID(src, dst, protoTCP) }); n != 1 {
		t.Errorf("ID: %v allocations, want 1", n)
	}
	if n := testing.AllocsPerRun(100, func() { IDICMP(src.Addr(), dst.Addr(), 128, 0) }); n != 1 {
		t.Errorf("IDICMP: %v allocations, want 1", n)
	}
}

func BenchmarkID(b *testing.B) {
	for _, flow := range [][2]string{
		{"192.0.2.10:40000", "198.51.100.1:443"},
		{"[2001:db8::10]:40000", "[2001:db8::1]:443"},
	} {
		src, dst := netip.MustParseAddrPort(flow[0]), netip.MustParseAddrPort(flow[1])
		b.Run(src.Addr().String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ID(src, dst, protoTCP)
			}
		})
	}
}
