package wgkey

import (
	"fmt"
	"strings"
	"testing"

	"golang.org/x/crypto/curve25519"
)

func TestPublicMatchesCurve25519(t *testing.T) {
	for range 20 {
		k, err := NewPrivate()
		if err != nil {
			t.Fatal(err)
		}
		if k[0]&7 != 0 || k[31]&128 != 0 || k[31]&64 == 0 {
			t.Fatalf("not clamped: %x", k[:])
		}
		want, err := curve25519.X25519(k[:], curve25519.Basepoint)
		if err != nil {
			t.Fatal(err)
		}
		if pub := k.Public(); string(pub[:]) != string(want) {
			t.Fatalf("Public %x, X25519 %x", pub[:], want)
		}
	}
}

// Alice's key pair of RFC 7748, section 6.1, in base64 and hex; `wg pubkey`
// prints the same public key.
const (
	privB64 = "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo="
	pubB64  = "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo="
	privHex = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
	pubHex  = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
)

func TestRoundTrips(t *testing.T) {
	priv, err := ParsePrivate(privB64)
	if err != nil {
		t.Fatal(err)
	}
	if priv.Base64() != privB64 {
		t.Errorf("Base64 %s", priv.Base64())
	}
	pub := priv.Public()
	if pub.String() != pubB64 {
		t.Errorf("public key %s, want %s", pub, pubB64)
	}
	if p, err := ParsePublic(pubB64); err != nil || p != pub {
		t.Errorf("ParsePublic: %v, %v", p, err)
	}
	if pub.Hex() != pubHex || priv.Hex() != privHex {
		t.Errorf("hex %s %s", pub.Hex(), priv.Hex())
	}
	if s := fmt.Sprintf("%v %s", priv, struct{ K Private }{priv}); strings.Contains(s, privB64) || strings.Contains(s, priv.Hex()) {
		t.Errorf("a private key printed: %s", s)
	}
	if priv.IsZero() || pub.IsZero() || !(Private{}).IsZero() || !(Public{}).IsZero() {
		t.Error("IsZero")
	}
}

func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"not-a-key", `key "not-a-key" is not base64`},
		{"AAAA", `key "AAAA" is 3 bytes, a WireGuard key is 32`},
		{"", `key "" is 0 bytes`},
	} {
		if _, err := ParsePublic(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParsePublic(%q): %v, want %q", tc.in, err, tc.want)
		}
		if _, err := ParsePrivate(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParsePrivate(%q): %v, want %q", tc.in, err, tc.want)
		}
	}
}
