package host

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"regexp"
)

// InstanceEnv carries the host process's instance name across its re-execs: the image that
// starts first chooses it and puts it in its own environment, and a re-exec passes the
// environment on. A container restart starts from the container's environment again, so it
// gets a new name (control.Status.Instance). That is how the agent tells a host that died —
// and took the versions it had loaded with it — from one that re-executed and restored them.
const InstanceEnv = "SPLICE_HOST_INSTANCE"

var instanceRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

// instance is this process's instance name (see InstanceEnv).
var instance = processInstance()

func processInstance() string {
	if v := os.Getenv(InstanceEnv); instanceRE.MatchString(v) {
		return v
	}
	var b [16]byte
	// crypto/rand.Read never returns an error (since Go 1.24 it crashes the program instead).
	_, _ = rand.Read(b[:])
	v := hex.EncodeToString(b[:])
	_ = os.Setenv(InstanceEnv, v)
	return v
}
