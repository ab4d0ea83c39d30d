package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/skip2/go-qrcode"
)

// configFlags are the flags of the commands that hand out a client config:
// where it goes and whether to draw it as a QR code.
type configFlags struct {
	out   *string
	force *bool
	qr    *bool
}

func addConfigFlags(fs *flag.FlagSet) configFlags {
	return configFlags{
		out:   fs.String("o", "", "write the client config to this new file (mode 0600) instead of stdout"),
		force: fs.Bool("force", false, "with -o: replace the file if it exists"),
		qr:    fs.Bool("qr", false, "also print the config as a QR code (on stderr)"),
	}
}

// secretFile is the -o file a client config goes to. It is created before
// the policy is edited, so that a taken name refuses the command while
// nothing has changed yet, and a generated private key never ends up with
// nowhere to go. Without --force the name is reserved with O_EXCL, mode
// 0600; with --force the config goes to a 0600 temporary file that is
// renamed over the old one, so the old file's mode does not carry over.
type secretFile struct {
	path  string
	f     *os.File
	force bool
}

func createSecret(path string, force bool) (*secretFile, error) {
	if !force {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("%s exists: not overwritten (--force replaces it)", path)
		}
		if err != nil {
			return nil, err
		}
		return &secretFile{path: path, f: f}, nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, err
	}
	return &secretFile{path: path, f: f, force: true}, nil
}

// abort removes what createSecret made.
func (s *secretFile) abort() {
	s.f.Close()
	os.Remove(s.f.Name())
}

// commit writes the config and puts the file in place.
func (s *secretFile) commit(data string) error {
	_, err := s.f.WriteString(data)
	if err == nil {
		err = s.f.Sync()
	}
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	if err == nil && s.force {
		err = os.Rename(s.f.Name(), s.path)
	}
	if err != nil {
		os.Remove(s.f.Name())
		return fmt.Errorf("writing %s: %w", s.path, err)
	}
	return nil
}

// prepareOut creates the -o file, if any. A non-zero code is the exit
// code, after printing why.
func (cf configFlags) prepareOut(cmd string, stderr io.Writer) (out *secretFile, code int) {
	if *cf.out == "" {
		if *cf.force {
			fmt.Fprintf(stderr, "wardgate %s: --force goes with -o FILE\n", cmd)
			return nil, 2
		}
		return nil, 0
	}
	out, err := createSecret(*cf.out, *cf.force)
	if err != nil {
		fmt.Fprintf(stderr, "wardgate %s: -o: %v; nothing changed\n", cmd, err)
		return nil, 1
	}
	return out, 0
}

// deliver writes the rendered config to the -o file or stdout, and the QR
// code on stderr. A file that cannot be written after all gets the config
// on stdout instead: the policy already holds the new key, and its
// private half exists nowhere else.
func (cf configFlags) deliver(cmd string, out *secretFile, conf string, stdout, stderr io.Writer) int {
	code := 0
	if out == nil {
		fmt.Fprint(stdout, conf)
	} else if err := out.commit(conf); err != nil {
		fmt.Fprintf(stderr, "wardgate %s: %v; the config follows on stdout instead (the policy was changed)\n", cmd, err)
		fmt.Fprint(stdout, conf)
		code = 1
	} else {
		fmt.Fprintf(stderr, "wrote the client config to %s (mode 0600)\n", out.path)
	}
	if *cf.qr {
		q, err := qrcode.New(conf, qrcode.Low)
		if err != nil {
			fmt.Fprintf(stderr, "wardgate %s: QR code: %v\n", cmd, err)
			return 1
		}
		fmt.Fprint(stderr, q.ToSmallString(false))
	}
	return code
}
