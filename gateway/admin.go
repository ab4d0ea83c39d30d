package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/wardgate/wardgate/policy"
)

// The admin API is JSON over HTTP on the unix socket of [admin] socket:
//
//	GET  /v1/status  Status
//	GET  /v1/flows   []FlowInfo
//	GET  /v1/peers   []PeerStatus (Status().Peers)
//	POST /v1/reload  200 ReloadResult{ok: true, policy_hash, what changed}
//	                 422 ReloadResult{ok: false, error, problems: ["file:line:col: msg"]}
//	GET, POST /v1/quarantine, DELETE /v1/quarantine/NAME: quarantine_admin.go
//
// The socket is the access control: there is no authentication on top of
// it. It is created with mode 0660, so only the gateway's user and group
// can connect (and so reload the policy and see who is connected); give the
// group to the operators who may do that, and nobody else. Its directory is
// created 0750 when missing. A relative socket path is relative to
// gateway.toml, like every path in it.

// ReloadResult is the body of POST /v1/reload.
type ReloadResult struct {
	OK bool `json:"ok"`
	// What a good reload changed: hashes, enforce mode, peers, revoked
	// flows.
	*ReloadChanges
	Error    string   `json:"error,omitempty"`
	Problems []string `json:"problems,omitempty"` // "file:line:col: msg", when the error has positions
}

// adminBackend is what the admin API serves: the Gateway, or a fake in tests.
type adminBackend interface {
	Status() Status
	Flows() []FlowInfo
	Reload() (ReloadChanges, error)
}

// newAdminHandler returns the admin API's HTTP handler for b.
func newAdminHandler(b adminBackend) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, b.Status())
	})
	mux.HandleFunc("GET /v1/flows", func(w http.ResponseWriter, r *http.Request) {
		fl := b.Flows()
		if fl == nil {
			fl = []FlowInfo{}
		}
		writeJSON(w, http.StatusOK, fl)
	})
	mux.HandleFunc("GET /v1/peers", func(w http.ResponseWriter, r *http.Request) {
		ps := b.Status().Peers
		if ps == nil {
			ps = []PeerStatus{}
		}
		writeJSON(w, http.StatusOK, ps)
	})
	mux.HandleFunc("POST /v1/reload", func(w http.ResponseWriter, r *http.Request) {
		ch, err := b.Reload()
		if err != nil {
			writeJSON(w, http.StatusUnprocessableEntity, reloadFailure(err))
			return
		}
		writeJSON(w, http.StatusOK, ReloadResult{OK: true, ReloadChanges: &ch})
	})
	if qb, ok := b.(quarantineBackend); ok {
		addQuarantineRoutes(mux, qb)
	}
	return mux
}

// reloadFailure turns a refused reload into its API body: every positioned
// problem of a *policy.LoadError on a line of its own.
func reloadFailure(err error) ReloadResult {
	res := ReloadResult{Error: err.Error()}
	var le *policy.LoadError
	if errors.As(err, &le) {
		for _, p := range le.Problems {
			res.Problems = append(res.Problems, p.Error())
		}
	}
	return res
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// adminServer is a running admin API.
type adminServer struct {
	path string
	srv  *http.Server
	done chan struct{} // closed when Serve returns
}

// startAdmin serves the admin API on [admin] socket; nothing when it is
// empty. A stale socket file (nobody answers on it) is replaced; a live
// one, or any other kind of file there, is an error.
func (g *Gateway) startAdmin() error {
	path := g.cfg.Admin.Socket
	if path == "" {
		return nil
	}
	path = g.cfg.Path(path)
	ln, err := listenAdmin(path)
	if err != nil {
		return err
	}
	a := &adminServer{
		path: path,
		srv: &http.Server{
			Handler:           newAdminHandler(g),
			ConnContext:       withCaller, // who quarantines (quarantine_admin.go)
			ReadHeaderTimeout: 5 * time.Second,
		},
		done: make(chan struct{}),
	}
	g.admin = a
	go func() {
		defer close(a.done)
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			g.log.Error("admin API stopped", "socket", path, "err", err)
		}
	}()
	g.log.Info("admin API listening", "socket", path)
	return nil
}

// maxSocketPath is the longest unix socket path Linux accepts (sun_path is
// 108 bytes with the terminating NUL).
const maxSocketPath = 107

// listenAdmin listens on a unix socket at path with mode 0660. The socket
// is made under a temporary name, chmod'ed, then renamed into place, so
// that it is never reachable with the umask's looser mode.
func listenAdmin(path string) (*net.UnixListener, error) {
	dir := filepath.Dir(path)
	// The temporary name is no longer than most socket names, so that a
	// path that fits sun_path fits with it too.
	tmp := filepath.Join(dir, fmt.Sprintf(".s%d", os.Getpid()))
	if n := max(len(path), len(tmp)); n > maxSocketPath {
		return nil, fmt.Errorf("admin socket %s: a unix socket path may have at most %d bytes, this one needs %d", path, maxSocketPath, n)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	if st, err := os.Lstat(tmp); err == nil && st.Mode().Type() == fs.ModeSocket {
		os.Remove(tmp) // left by a crashed gateway with our pid
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(false) // it is renamed; stopAdmin removes it
	if err := os.Chmod(tmp, 0o660); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, err
	}
	return ln, nil
}

// removeStaleSocket removes a socket file nobody listens on. A socket that
// answers belongs to a running gateway; anything else is not ours to delete.
func removeStaleSocket(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket; refusing to replace it", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("%s: another gateway is serving its admin API there", path)
	}
	return os.Remove(path)
}

// stopAdmin stops the admin API and removes its socket. A request in
// progress gets a moment to finish.
func (g *Gateway) stopAdmin() {
	a := g.admin
	if a == nil {
		return
	}
	g.admin = nil
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := a.srv.Shutdown(ctx); err != nil {
		a.srv.Close()
	}
	<-a.done
	os.Remove(a.path)
}
