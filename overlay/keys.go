package overlay

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"fmt"
)

// NewPrivateKey returns a new random WireGuard private key.
func NewPrivateKey() (Key, error) {
	var k Key
	if _, err := rand.Read(k[:]); err != nil {
		return Key{}, err
	}
	// Clamp as Curve25519 does (and as `wg genkey` prints).
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
	return k, nil
}

// PublicKey returns the public key of the private key k.
func (k Key) PublicKey() Key {
	priv, err := ecdh.X25519().NewPrivateKey(k[:])
	if err != nil {
		panic(err) // unreachable: any 32 bytes are an X25519 private key
	}
	var pub Key
	copy(pub[:], priv.PublicKey().Bytes())
	return pub
}

// ParseKey parses a key in the base64 form of `wg genkey` and `wg pubkey`.
func ParseKey(s string) (Key, error) {
	var k Key
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(raw) != len(k) {
		return Key{}, fmt.Errorf("overlay: bad key %q: want 32 bytes in base64", s)
	}
	copy(k[:], raw)
	return k, nil
}

// Base64 returns the key as `wg` prints it.
func (k Key) Base64() string { return base64.StdEncoding.EncodeToString(k[:]) }
