// Package wgkey is WireGuard's keys: a Private key, which stays on the host
// that made it, and the Public key derived from it, by which the policy
// names sites and identities. They are distinct types so that one cannot
// be passed where the other is meant. Files and the policy spell keys in
// base64, as `wg genkey` and `wg pubkey` print them; the wireguard-go
// device's configuration (UAPI) spells them in hex, which only the Hex
// methods give.
package wgkey

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
)

// Len is the length of a WireGuard key in bytes.
const Len = 32

// Private is a Curve25519 private key.
type Private [Len]byte

// Public is a Curve25519 public key.
type Public [Len]byte

// NewPrivate returns a new random private key, clamped as `wg genkey`
// prints it.
func NewPrivate() (Private, error) {
	var k Private
	if _, err := rand.Read(k[:]); err != nil {
		return Private{}, err
	}
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
	return k, nil
}

// ParsePrivate parses a private key in base64 (`wg genkey`).
func ParsePrivate(s string) (Private, error) {
	b, err := parse(s)
	return Private(b), err
}

// ParsePublic parses a public key in base64 (`wg pubkey`).
func ParsePublic(s string) (Public, error) {
	b, err := parse(s)
	return Public(b), err
}

func parse(s string) ([Len]byte, error) {
	var k [Len]byte
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return k, fmt.Errorf("key %q is not base64: %w", s, err)
	}
	if len(b) != Len {
		return k, fmt.Errorf("key %q is %d bytes, a WireGuard key is %d", s, len(b), Len)
	}
	copy(k[:], b)
	return k, nil
}

// Public returns the public key of k.
func (k Private) Public() Public {
	priv, err := ecdh.X25519().NewPrivateKey(k[:])
	if err != nil {
		panic(err) // unreachable: any 32 bytes are an X25519 private key
	}
	return Public(priv.PublicKey().Bytes())
}

// Base64 returns k as `wg genkey` prints it, for a key file or a client
// configuration. It is a method of its own, not String, so that a private
// key printed by mistake (in a log line, a %v of a struct) shows no secret.
func (k Private) Base64() string { return base64.StdEncoding.EncodeToString(k[:]) }

// String hides the key; see Base64.
func (k Private) String() string { return "(private key)" }

// Hex returns k as the device's configuration spells it (private_key=).
func (k Private) Hex() string { return hex.EncodeToString(k[:]) }

// IsZero reports whether k is the zero key (none).
func (k Private) IsZero() bool { return k == Private{} }

// String returns k in base64, as `wg pubkey` prints it.
func (k Public) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// Hex returns k as the device's configuration spells it (public_key=).
func (k Public) Hex() string { return hex.EncodeToString(k[:]) }

// IsZero reports whether k is the zero key (none).
func (k Public) IsZero() bool { return k == Public{} }
