package gateway

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/wardgate/wardgate/internal/wgkey"
	"github.com/wardgate/wardgate/policy"
)

// The gateway's private key: read from private_key_file, refused when
// others can read it, checked against the site's key in the policy.

// ErrKeyTooOpen is returned (wrapped) when the private key file can be read
// by group or others.
var ErrKeyTooOpen = errors.New("private key file is readable by group or others (chmod 600)")

// ReadPrivateKey reads the private key file in `wg genkey` format. A file
// that group or others can read is refused: the key is the gateway's
// identity in the mesh.
func (c *Config) ReadPrivateKey() (wgkey.Private, error) {
	path := c.Path(c.PrivateKeyFile)
	st, err := os.Stat(path)
	if err != nil {
		return wgkey.Private{}, fmt.Errorf("%s: %w", path, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return wgkey.Private{}, fmt.Errorf("%s: mode %04o: %w", path, st.Mode().Perm(), ErrKeyTooOpen)
	}
	return c.readKeyFile()
}

// readKeyFile reads private_key_file, whatever its mode.
func (c *Config) readKeyFile() (wgkey.Private, error) {
	path := c.Path(c.PrivateKeyFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return wgkey.Private{}, fmt.Errorf("%s: %w", path, err)
	}
	k, err := wgkey.ParsePrivate(strings.TrimSpace(string(data)))
	if err != nil {
		return wgkey.Private{}, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// CheckKeyMatches reports a private_key_file whose public key is not the
// policy's key for this site: such a gateway would start and complete no
// handshake with anyone. `run` and reload refuse it; `check` warns. A
// key file that cannot be read is not this check's business (nil).
func (c *Config) CheckKeyMatches(pol *policy.Policy) error {
	site := pol.Site(c.Site)
	key, err := c.readKeyFile()
	if site == nil || err != nil {
		return nil
	}
	return (&state{pol: pol, site: site, cfg: c, key: key}).checkKey()
}
