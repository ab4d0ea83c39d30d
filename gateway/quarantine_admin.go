package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/user"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The quarantine routes of the admin API, for operators and for EDR or
// SOAR playbooks alike:
//
//	GET    /v1/quarantine       []QuarantineEntry, the identities in quarantine
//	POST   /v1/quarantine       {"identity": NAME, "reason": TEXT}
//	                            200 QuarantineResult; 400/404 {"error"}: nothing changed
//	DELETE /v1/quarantine/NAME  optional body {"reason": TEXT}; 200 QuarantineResult, 404 when not quarantined or unknown
//
// Who asked is not taken from the request: it is the caller's uid and
// process as the kernel reports them on the admin socket (SO_PEERCRED).

// QuarantineRequest is the body of POST /v1/quarantine (and, with reason
// only, of DELETE).
type QuarantineRequest struct {
	Identity string `json:"identity"`
	Reason   string `json:"reason"`
}

// QuarantineResult answers a quarantine or release.
type QuarantineResult struct {
	QuarantineEntry
	// Already: the identity was quarantined before this request; its
	// record is unchanged.
	Already bool `json:"already,omitempty"`
}

// quarantineBackend is the part of the admin backend that quarantines.
type quarantineBackend interface {
	Quarantine(name, reason, by string) (QuarantineEntry, bool, error)
	Release(name, reason, by string) (QuarantineEntry, error)
	Quarantines() []QuarantineEntry
}

var _ quarantineBackend = (*Gateway)(nil)

// addQuarantineRoutes registers the routes above on mux.
func addQuarantineRoutes(mux *http.ServeMux, b quarantineBackend) {
	mux.HandleFunc("GET /v1/quarantine", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, b.Quarantines())
	})
	mux.HandleFunc("POST /v1/quarantine", func(w http.ResponseWriter, r *http.Request) {
		var req QuarantineRequest
		if err := readRequest(r, &req, true); err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody{err.Error()})
			return
		}
		if req.Identity == "" {
			writeJSON(w, http.StatusBadRequest, errorBody{`"identity" is required`})
			return
		}
		e, already, err := b.Quarantine(req.Identity, req.Reason, callerOf(r))
		if err != nil {
			writeJSON(w, quarantineStatus(err), errorBody{err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, QuarantineResult{QuarantineEntry: e, Already: already})
	})
	mux.HandleFunc("DELETE /v1/quarantine/{name}", func(w http.ResponseWriter, r *http.Request) {
		var req QuarantineRequest
		if err := readRequest(r, &req, false); err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody{err.Error()})
			return
		}
		e, err := b.Release(r.PathValue("name"), req.Reason, callerOf(r))
		if err != nil {
			writeJSON(w, quarantineStatus(err), errorBody{err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, QuarantineResult{QuarantineEntry: e})
	})
}

type errorBody struct {
	Error string `json:"error"`
}

// readRequest decodes a small JSON body into v; an empty body is an error
// only when required.
func readRequest(r *http.Request, v any, required bool) error {
	data, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		return err
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		if required {
			return errors.New(`want a JSON body {"identity": NAME, "reason": TEXT}`)
		}
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("bad JSON body: %w", err)
	}
	return nil
}

func quarantineStatus(err error) int {
	var qe *QuarantineError
	switch {
	case errors.As(err, &qe) && qe.NotFound:
		return http.StatusNotFound
	case errors.As(err, &qe):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// callerKey is the context key of the admin socket caller (callerOf).
type callerKey struct{}

// withCaller is the admin server's ConnContext: it records who is on the
// other end of the unix socket, as the kernel says, for the whole
// connection.
func withCaller(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *unix.Ucred
	var credErr error
	raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if credErr != nil || cred == nil {
		return ctx
	}
	return context.WithValue(ctx, callerKey{}, describeCaller(cred.Uid, cred.Pid))
}

// describeCaller names a caller: "uid 1000 (alice), pid 4242 (curl)".
// The user and process names are looked up once, when the connection is
// made; a process already gone keeps its pid alone.
func describeCaller(uid uint32, pid int32) string {
	s := "uid " + strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		s += " (" + u.Username + ")"
	}
	if pid > 0 {
		s += ", pid " + strconv.Itoa(int(pid))
		if comm, err := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/comm"); err == nil {
			s += " (" + strings.TrimSpace(string(comm)) + ")"
		}
	}
	return s
}

// callerOf is who made r: the admin socket's peer, or "unknown" when the
// kernel did not say (not a unix socket).
func callerOf(r *http.Request) string {
	if s, ok := r.Context().Value(callerKey{}).(string); ok {
		return s
	}
	return "unknown"
}
